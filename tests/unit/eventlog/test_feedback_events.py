"""The feedback event types: ``dislike``, ``hide`` and ``impression`` (with ``item_ids``) at every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from batch_layer.interactions import read_interactions
from lambdarec.events import BadEvent, Event, EventRules, encode_event
from lambdarec.lake import Lake
from lambdarec.lake.schema import EVENTS_SCHEMA, event_rows
from lambdarec.settings import BatchSettings, ConfigError, LakeSettings, Settings, SpeedSettings
from speed_layer.state import apply_trending, apply_user_events

NOW = 1_764_400_000.0
RULES = EventRules.from_settings(Settings.load())


def wire(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "user_id": "u1", "event_type": "impression", "timestamp": NOW}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def parse(raw: bytes) -> Event:
    return RULES.parse(raw, now=NOW)


@pytest.mark.parametrize("etype", ["dislike", "hide"])
def test_dislike_and_hide_are_known_types_with_one_item(etype: str) -> None:
    ev = parse(wire(event_type=etype, item_id="i7"))
    assert (ev.event_type, ev.item_id, ev.item_ids) == (etype, "i7", ())


def test_feedback_types_are_accepted_even_when_event_weights_do_not_name_them() -> None:
    rules = EventRules.from_settings(Settings.load(overrides={"batch": {"event_weights": {"view": 1.0}}}))
    assert rules.parse(wire(event_type="hide", item_id="i1"), now=NOW).event_type == "hide"
    with pytest.raises(BadEvent, match="unknown event_type 'click'; known: dislike, hide, impression, view"):
        rules.parse(wire(event_type="click", item_id="i1"), now=NOW)


def test_an_impression_lists_items_and_its_item_id_defaults_to_the_first() -> None:
    ev = parse(wire(item_ids=["i3", "i1", "i2"]))
    assert ev.item_ids == ("i3", "i1", "i2") and ev.item_id == "i3"
    assert parse(encode_event(ev)) == ev  # the log's bytes round-trip
    assert parse(wire(item_id="i2", item_ids=["i3", "i2"])).item_id == "i2"
    assert parse(wire(item_id="i9")).item_ids == ("i9",)  # one shown item may be given as item_id alone


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "an impression needs field 'item_ids'"),
        ({"item_ids": []}, "an impression needs field 'item_ids'"),
        ({"item_ids": [f"i{n}" for n in range(101)]}, "lists 101 items > limit 100 (events.max_impression_items)"),
        ({"item_ids": ["i1", "i2", "i1"]}, "lists 'i1' more than once"),
        ({"item_ids": ["i1", " i2"]}, "field 'item_ids[1]' ' i2' is blank or has a control character"),
        ({"item_ids": ["i1", ""]}, "field 'item_ids' must not be empty"),
        ({"item_ids": ["i1", 5]}, "field 'item_ids' has wrong type"),
        ({"item_ids": "i1"}, "field 'item_ids' has wrong type: expected array"),
        ({"item_id": "i9", "item_ids": ["i1"]}, "field 'item_id' 'i9' is not in field 'item_ids'"),
        ({"event_type": "click", "item_id": "i1", "item_ids": ["i1"]}, "'item_ids' is only for event_type"),
        ({"event_type": "dislike"}, "missing field 'item_id'"),
        ({"event_type": "hide", "item_id": "x" * 300}, "field 'item_id' is 300 characters > limit 256"),
    ],
)
def test_bad_feedback_events_are_refused_naming_the_field(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(BadEvent) as caught:
        parse(wire(**fields))
    assert reason in caught.value.reason


def test_the_impression_limit_is_a_setting() -> None:
    rules = EventRules.from_settings(Settings.load(overrides={"events": {"max_impression_items": 2}}))
    with pytest.raises(BadEvent, match=r"3 items > limit 2"):
        rules.parse(wire(item_ids=["a", "b", "c"]), now=NOW)
    with pytest.raises(ConfigError):
        Settings.load(overrides={"events": {"max_impression_items": 101}})


def test_the_lake_keeps_an_impressions_items_and_a_table_without_the_column_gains_it(tmp_path: Path) -> None:
    imp = parse(wire(item_ids=["i3", "i1"]))
    click = parse(wire(event_type="click", item_id="i5", event_id="e2"))
    rows = event_rows([(imp, (0, 0)), (click, (0, 1))], source="log", ingested_at=NOW)
    assert rows.column("item_ids").to_pylist() == [["i3", "i1"], None]
    # a table written before the column existed: the archiver's append adds it, older rows read as null
    old_schema = pa.schema([f for f in EVENTS_SCHEMA if f.name != "item_ids"])
    write_deltalake(str(tmp_path / "events"), rows.select(old_schema.names).slice(1), partition_by=["event_date"])
    lake = Lake(LakeSettings(url=str(tmp_path)))
    lake.append_log(rows.slice(0, 1), {0: 1})
    got = pl.scan_delta(DeltaTable(str(tmp_path / "events"))).select("event_id", "item_ids").collect().sort("event_id")
    assert got.to_dicts() == [{"event_id": "e1", "item_ids": ["i3", "i1"]}, {"event_id": "e2", "item_ids": None}]


def test_training_reads_feedback_but_never_trains_on_it(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    types = ["click", "dislike", "hide", "impression", "view", "rocket"]
    pl.DataFrame(
        {
            "user_id": ["u1"] * len(types),
            "item_id": [f"i{n}" for n in range(len(types))],
            "timestamp": [1_700_000_000 + n for n in range(len(types))],
            "event_type": types,
        }
    ).write_csv(path)
    frame, report = read_interactions(path, BatchSettings())
    assert frame["event_type"].to_list() == ["click", "view"]
    assert report.non_positive == 3 and report.bad_rows == {"unknown_event_type": 1}
    assert report.rows_read == report.rows_kept + report.bad_total + report.duplicates_dropped + 3
    # configurable: a dislike can be trained on when given a weight and taken out of the list
    frame, report = read_interactions(
        path,
        BatchSettings(
            event_weights={"click": 1.0, "view": 1.0, "dislike": 0.5}, non_positive_types=["hide", "impression"]
        ),
    )
    assert frame["event_type"].to_list() == ["click", "dislike", "view"] and report.non_positive == 2


def test_a_feedback_type_is_either_trained_on_or_not() -> None:
    with pytest.raises(ValueError, match="give each a weight"):
        BatchSettings(non_positive_types=["hide"])
    with pytest.raises(ValueError, match="in both event_weights and non_positive_types"):
        BatchSettings(event_weights={"view": 1.0, "hide": 1.0})


def test_the_speed_layer_counts_no_feedback_as_an_interaction() -> None:
    events = [
        (Event(event_id="a", user_id="u1", item_id="i1", event_type="dislike", timestamp=NOW), (0, 4)),
        (Event(event_id="b", user_id="u1", item_id="i2", event_type="impression", timestamp=NOW + 1), (0, 5)),
        (Event(event_id="c", user_id="u1", item_id="i3", event_type="view", timestamp=NOW + 2), (0, 6)),
    ]
    state = apply_user_events(None, events[:2], None, None, settings=SpeedSettings(), default_weights={"view": 1})
    assert state is not None and state.events == [] and state.recent == [] and state.positions == {"0": 6}
    state = apply_user_events(state, events, None, None, settings=SpeedSettings(), default_weights={"view": 1})
    assert state is not None and [e[0] for e in state.events] == ["i3"] and state.positions == {"0": 7}
    assert apply_trending(None, events[:1], {"view": 1.0}, 3600.0).count == 0.0
