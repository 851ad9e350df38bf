"""The block's dense table steps written through flat positions (``cells``, ``seen_table``, ``source_table``) give
exactly what numpy's 2-D indexing gives: the same cells in the same row-major order, the first source kept."""

from __future__ import annotations

import numpy as np

from lambdarec.rank.block import NONE, cells, seen_table, source_table


def test_cells_are_numpys_nonzero_in_row_major_order() -> None:
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (3, 17), (40, 1682), (5, 0), (0, 9)]:
        mask = rng.random(shape) < 0.2
        rows, columns = cells(mask)
        want_rows, want_columns = np.nonzero(mask)
        assert rows.tolist() == want_rows.tolist() and columns.tolist() == want_columns.tolist(), shape


def test_seen_and_source_tables_match_two_dimensional_indexing() -> None:
    rng = np.random.default_rng(8)
    n_items, n = 60, 9
    parts = [rng.choice(n_items, rng.integers(0, 20), replace=False) for _ in range(n)]
    parts[3] = np.empty(0, dtype=np.int64)  # a request that has seen nothing
    seen = seen_table(n_items, parts)
    want = np.zeros((n, n_items), dtype=bool)
    for b, p in enumerate(parts):
        want[b, p] = True
    assert (seen == want).all()
    found = []
    for code in range(5):  # each source brings some cells; several bring the same (the first must stay)
        rows = rng.integers(0, n, 80)
        found.append((code, rows, rng.integers(0, n_items, rows.size)))
    got = source_table(seen, found)
    expected = np.full((n, n_items), NONE, dtype=np.int8)
    for code, rows, items in found:
        for r, i in zip(rows.tolist(), items.tolist(), strict=True):
            if expected[r, i] == NONE:
                expected[r, i] = code
    expected[seen] = NONE  # seen items are never pooled
    assert got.dtype == np.int8 and (got == expected).all()
