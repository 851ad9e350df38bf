"""Brand-new items: the ALS item step equals implicit's recalculate_item; the model extended with them; the speed
layer keeps each item's users and their vectors in its trending shards, re-solved on a flip."""

from __future__ import annotations

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares

from batch_layer.train.implicit_mf import als_confidence
from lambdarec.events import Event
from lambdarec.model.factors import gram
from lambdarec.model.fresh_items import extend, fresh_item_vectors, item_step, with_fresh_items
from lambdarec.model.rows import FreshUser, ShardTerms, TrendingItem, UserRow
from lambdarec.rank import MergeInput, MergeWeights, merge
from lambdarec.rank.trending import trending_scores
from lambdarec.settings import SpeedSettings
from speed_layer.apply import BatchInputs, compute_states, group_events
from speed_layer.fresh_items import stale_users
from tests.factories import snapshot_model

T = 1_764_400_000.0


def test_the_item_step_equals_implicit_recalculate_item(trained) -> None:
    matrix, settings, factors = trained
    model = AlternatingLeastSquares(factors=12, regularization=settings.train.regularization, alpha=1.0, use_cg=False)
    model.user_factors, model.item_factors = factors.user_factors, factors.item_factors
    item_users = als_confidence(matrix, settings.train.alpha).T.tocsr()
    xtx = gram(factors.user_factors)
    items = [i for i in range(matrix.shape[1]) if item_users[i].nnz][:25]
    assert len(items) == 25
    for i in items:
        expected = model.recalculate_item(i, item_users[i])
        col = matrix[:, i].tocsc()
        users = col.indices
        got = item_step(
            factors.user_factors[users],
            col.data,
            xtx,
            alpha=settings.train.alpha,
            regularization=settings.train.regularization,
        )
        np.testing.assert_allclose(got, expected, atol=1e-4)


def model_with_xtx(version: str = "v1"):
    m = snapshot_model(40, 8, version=version, solver={"alpha": 2.0, "regularization": 0.1})
    users = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
    object.__setattr__(m, "xtx", gram(users))
    return m


def shard(item: str, partition: int, users: dict[str, list[float]], basis: str = "v1") -> TrendingItem:
    return TrendingItem(item_id=item, partition=partition, count=len(users), as_of=T, basis=basis, users=users)


def test_a_new_items_vector_sums_its_users_over_every_shard_of_the_served_snapshot() -> None:
    model = model_with_xtx()
    rng = np.random.default_rng(2)
    vecs = {f"u{n}": rng.normal(size=8).astype(np.float32) for n in range(6)}
    weights = {f"u{n}": float(n + 1) for n in range(6)}
    terms = {u: [weights[u], *vecs[u].tolist()] for u in vecs}
    shards = [
        shard("new", 0, {u: terms[u] for u in ("u0", "u1", "u2")}),
        shard("new", 1, {u: terms[u] for u in ("u3", "u4", "u5")}),
        shard("new", 2, {"u9": [5.0, *([1.0] * 8)]}, basis="v0"),  # solved on another snapshot: not used
        shard("i3", 0, {"u0": terms["u0"]}),  # in the snapshot: the nightly's vector stands
    ]
    ids, vectors = fresh_item_vectors(shards, model)
    expected = item_step(np.array(list(vecs.values())), np.array(list(weights.values())), model.xtx,
                         alpha=2.0, regularization=0.1)  # fmt: skip
    assert ids == ["new"]
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-5, atol=1e-6)
    old = snapshot_model(40, 8)  # published before the xtx array existed: no brand-new item vectors
    assert fresh_item_vectors(shards, old)[0] == []


def test_the_extended_model_scores_ranks_and_finds_similar_items_for_a_new_item() -> None:
    model = model_with_xtx()
    near = model.item_factors[7] * 3.0  # a new item pointing where i7 points
    ext = extend(model, ["new"], near[None, :])
    assert len(ext.item_ids) == 41 and ext.item_index["new"] == 40 and ext.fresh_items == 1
    assert ext.neighbours[40, 0] == 7  # its nearest item by cosine
    np.testing.assert_array_equal(ext.neighbours[:40], model.neighbours)
    # a user whose fresh vector points the same way gets it near the top, from the speed source
    fresh = FreshUser(user_id="u1", vector=model.item_factors[7].tolist(), basis="v1")
    out = merge(MergeInput(ext, fresh=fresh, now_s=T), MergeWeights(), k=3)
    assert "new" in [r.item_id for r in out[:2]]
    # trending counts it, and a session on it brings its neighbours
    rows = {"new@0": TrendingItem(item_id="new", partition=0, count=50.0, as_of=T)}
    assert trending_scores(rows, ext, T, 3600.0)[40] == pytest.approx(50.0)
    session = merge(MergeInput(ext, session=[("new", T)], now_s=T), MergeWeights(), k=3)
    assert "i7" in [r.item_id for r in session]
    assert with_fresh_items([], ext) is not ext and len(with_fresh_items([], ext).item_ids) == 40


def test_the_speed_layer_keeps_each_new_items_users_and_their_vectors() -> None:
    model = model_with_xtx()
    hist = UserRow("u1", np.array([], np.int32), np.array([], np.float32), np.array([3, 4], np.int32),
                   np.array([2.0, 1.0], np.float32))  # fmt: skip
    events = [
        (Event(event_id="a", user_id="u1", item_id="new", event_type="view", timestamp=T), (0, 0)),
        (Event(event_id="b", user_id="u1", item_id="new", event_type="view", timestamp=T + 1), (0, 1)),
        (Event(event_id="c", user_id="u1", item_id="i5", event_type="view", timestamp=T + 2), (0, 2)),
    ]
    inputs = BatchInputs(model, {}, {"u1": hist}, {}, {"view": 1.0}, SpeedSettings(), {})
    users, items, _ = compute_states(*group_events(events), inputs)
    (new,) = [s for s in items if s.item_id == "new"]
    (known,) = [s for s in items if s.item_id == "i5"]
    assert known.term_users == [] and known.basis is None
    terms = new.terms.as_dict()
    assert new.basis == "v1" and list(terms) == ["u1"]
    assert terms["u1"][0] == 2.0
    np.testing.assert_allclose(terms["u1"][1:], users[0].vector, rtol=1e-6)
    # redelivered: counted once
    inputs = BatchInputs(model, {"u1": users[0]}, {"u1": hist}, {new.key: new}, {"view": 1.0}, SpeedSettings(), {})
    _, again, _ = compute_states(*group_events(events[:2]), inputs)
    assert again == []  # nothing new to write


def test_a_user_of_only_new_items_is_solved_once_per_batch_not_again_for_each_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A brand-new user whose events are all on brand-new items has no vector (no item the snapshot knows): the
    batch's solve says so, and the items' terms take that answer rather than solving the user again (which cost a
    solve per event where every event names a new user and item)."""
    from speed_layer import fresh_items

    model = model_with_xtx()
    events = [(Event(event_id=f"e{k}", user_id=f"new-user-{k}", item_id=f"new-item-{k % 3}", event_type="view",
                     timestamp=T + k), (0, k)) for k in range(12)]  # fmt: skip
    inputs = BatchInputs(model, {}, {}, {}, {"view": 1.0}, SpeedSettings(), {})
    monkeypatch.setattr(fresh_items, "rebase", lambda *a: pytest.fail("a user solved in this batch solved again"))
    users, items, _ = compute_states(*group_events(events), inputs)
    assert all(u.vector is None and u.basis == "v1" for u in users)
    assert sorted(s.item_id for s in items) == ["new-item-0", "new-item-1", "new-item-2"]
    assert all(terms == [1.0] for s in items for terms in s.terms.as_dict().values())  # the weight, no vector
    assert sum(len(s.terms) for s in items) == 12


def test_a_flip_re_solves_the_users_of_a_new_items_shard_against_the_new_snapshot() -> None:
    old, new_model = model_with_xtx("v1"), model_with_xtx("v2")
    object.__setattr__(new_model, "item_factors", new_model.item_factors * 2.0)
    stale = shard("new", 0, {"u1": [3.0, *([0.5] * 8)], "u2": [1.0, *([0.1] * 8)]}, basis="v1")
    assert stale_users([stale], new_model) == ["u1", "u2"] and stale_users([stale], old) == []
    hist = {u: UserRow(u, np.array([], np.int32), np.array([], np.float32), np.array([1], np.int32),
                       np.array([1.0], np.float32)) for u in ("u1", "u2")}  # fmt: skip
    event = Event(event_id="x", user_id="u3", item_id="new", event_type="view", timestamp=T)
    inputs = BatchInputs(new_model, {}, hist, {stale.key: stale}, {"view": 1.0}, SpeedSettings(), {})
    _, items, _ = compute_states(*group_events([(event, (0, 9))]), inputs)
    (rebased,) = items
    terms = rebased.terms.as_dict()
    assert rebased.basis == "v2" and set(terms) == {"u1", "u2", "u3"}
    assert terms["u1"][0] == 3.0 and terms["u1"][1:] != [0.5] * 8
    ids, _ = fresh_item_vectors([rebased], new_model)
    assert ids == ["new"]


def test_a_new_items_users_untouched_by_a_batch_keep_their_terms_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between two batches most of a hot new item's users neither act nor get a new vector: their stored weight
    and vector are kept as they were (not solved again), while the user who acted gets the added weight and their
    vector solved in this batch."""
    from speed_layer import fresh_items

    monkeypatch.setattr(fresh_items, "rebase", lambda *a: pytest.fail("a kept user's vector solved again"))
    model = model_with_xtx()
    before = shard("new", 0, {"u1": [3.0, *([0.5] * 8)], "u2": [1.0, *([0.1] * 8)]}, basis="v1")
    hist = UserRow("u2", np.array([], np.int32), np.array([], np.float32), np.array([3, 4], np.int32),
                   np.array([2.0, 1.0], np.float32))  # fmt: skip
    event = Event(event_id="x", user_id="u2", item_id="new", event_type="view", timestamp=T)
    inputs = BatchInputs(model, {}, {"u2": hist}, {before.key: before}, {"view": 1.0}, SpeedSettings(), {})
    users, items, _ = compute_states(*group_events([(event, (0, 9))]), inputs)
    (after,) = items
    terms = after.terms.as_dict()
    assert terms["u1"] == [3.0, *([0.5] * 8)]
    assert terms["u2"][0] == 2.0 and terms["u2"][1:] != [0.1] * 8
    np.testing.assert_allclose(terms["u2"][1:], users[0].vector, rtol=1e-6)


def test_a_kept_users_new_weight_is_written_with_their_vector_even_without_a_new_solve() -> None:
    """A new weight (an event of a user whose fold-in this batch left out) is written with the kept vector; a
    kept user with only a weight (no vector known when last written) is solved now, and one with no interaction
    the snapshot knows stays without a vector."""
    from speed_layer.fresh_items import ItemInputs, _terms

    model = model_with_xtx()
    kept = ShardTerms.of({"u1": [3.0, *([0.5] * 8)], "u2": [1.0]})
    hist = UserRow("u2", np.array([], np.int32), np.array([], np.float32), np.array([3], np.int32),
                   np.array([1.0], np.float32))  # fmt: skip
    inputs = ItemInputs(model, {}, {"u2": hist}, {}, {"view": 1.0}, 500)
    got = _terms({"u1": 4.0, "u2": 2.0, "u3": 1.0}, {}, kept, inputs, model).as_dict()
    assert got["u1"] == [4.0, *([0.5] * 8)]
    assert got["u2"][0] == 2.0 and len(got["u2"]) == 9  # solved from the batch row
    assert got["u3"] == [1.0]
