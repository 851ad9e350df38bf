"""Item files for ``lambdarec items import``: JSON lines (one item object a line), CSV and parquet, each row
turned into the item object ``POST /v1/items`` takes, numbered by its line (JSON lines, CSV: the header is line 1)
or row (parquet, from 1).

Columns: ``item_id``, ``available``, ``categories``, ``attributes``, ``created_at``, ``expires_at``; any other
column is an attribute. In CSV, ``categories`` are separated by ``|``, ``available`` is ``true``/``false`` (or
``1``/``0``, ``yes``/``no``), ``attributes`` (when present) is a JSON object, a number-looking cell of another
column is a number, and an empty cell leaves its field out. In parquet, a list column holds categories and a
struct or map column attributes.

Example
-------
>>> for line, obj in read_items(Path("items.csv")):          # doctest: +SKIP
...     print(line, obj)
2 {'item_id': 'i7', 'available': False, 'categories': ['shoes']}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

Format = Literal["jsonl", "csv", "parquet"]
SUFFIXES: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
                               ".parquet": "parquet", ".pq": "parquet"}  # fmt: skip
_TRUE, _FALSE = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n"}


class BadLine(ValueError):
    """A line that is no item object at all (not JSON); the others are judged by ``parse_item``."""


def format_of(path: Path, given: str | None) -> Format:
    if given:
        return given  # type: ignore[return-value]
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(f"{path}: cannot tell the format from {path.suffix!r}; use --format jsonl, csv or parquet")
    return found


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _csv_object(row: dict[str, str | None]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, cell in row.items():
        if cell is None or cell == "":
            continue
        if name == "available":
            low = cell.strip().lower()
            obj[name] = True if low in _TRUE else False if low in _FALSE else cell  # parse_item refuses the rest
        elif name == "categories":
            obj[name] = [c.strip() for c in cell.split("|") if c.strip()]
        elif name == "attributes":
            attributes.update(json.loads(cell))
        elif name in ("item_id", "created_at", "expires_at"):
            obj[name] = _number(cell) if name != "item_id" else cell
        else:
            attributes[name] = _number(cell)
    if attributes:
        obj["attributes"] = attributes
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _parquet_object(row: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            continue
        if name in ("item_id", "available", "categories", "created_at", "expires_at"):
            obj[name] = _plain(value)
        elif name == "attributes":
            pairs = value.items() if isinstance(value, dict) else ((p["key"], p["value"]) for p in value)
            attributes.update((k, v) for k, v in pairs if v is not None)
        else:
            attributes[name] = _plain(value)
    if attributes:
        obj["attributes"] = attributes
    return obj


def read_items(path: Path, fmt: Format) -> Iterator[tuple[int, Any]]:
    """(line or row number, item object or a ``BadLine``) for each item in ``path``."""
    if fmt == "jsonl":
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except ValueError as exc:
                        yield number, BadLine(f"not JSON: {exc}")
        return
    import polars as pl  # only for CSV and parquet; the core's CLI starts without it

    if fmt == "csv":
        frame = pl.read_csv(path, infer_schema=False)
        for number, row in enumerate(frame.iter_rows(named=True), start=2):
            try:
                yield number, _csv_object(row)
            except ValueError as exc:
                yield number, BadLine(f"column 'attributes' is not a JSON object: {exc}")
        return
    for number, row in enumerate(pl.read_parquet(path).iter_rows(named=True), start=1):
        yield number, _parquet_object(row)
