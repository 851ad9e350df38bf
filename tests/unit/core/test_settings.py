"""The settings tree: defaults, file, environment, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from lambdarec.settings import ConfigError, Settings, mask_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LAMBDAREC_"):
            monkeypatch.delenv(name)


def test_defaults_are_embedded_sqlite() -> None:
    s = Settings.load()
    assert s.store.url.startswith("sqlite://")
    assert s.log.url.startswith("sqlite://")
    assert s.batch.top_k == 200 and s.store.keep_versions == 3


def test_every_field_is_documented() -> None:
    def walk(model: type, path: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(f"{path}{name}")
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                missing += walk(ann, f"{path}{name}.")
        return missing

    assert walk(Settings, "") == []


def test_file_then_env_then_overrides(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "lambdarec.toml"
    cfg.write_text("[batch]\ntop_k = 50\n[batch.train]\nfactors = 32\n[serving]\nport = 9000\n")
    monkeypatch.setenv("LAMBDAREC_BATCH__TOP_K", "70")
    s = Settings.load(cfg, overrides={"serving": {"port": 9100}})
    assert s.batch.train.factors == 32  # file
    assert s.batch.top_k == 70  # env beats file
    assert s.serving.port == 9100  # override beats both


def test_config_from_env_variable(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nurl = "sqlite:///elsewhere"\n')
    monkeypatch.setenv("LAMBDAREC_CONFIG", str(cfg))
    assert Settings.load().store.url == "sqlite:///elsewhere"


def test_unknown_key_in_file_is_named(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[batch]\nfactorz = 8\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'batch\.factorz'"):
        Settings.load(cfg)


def test_unknown_section_in_env_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_STORE_URL", "sqlite:///x")  # single underscore: a common slip
    with pytest.raises(ConfigError, match=r"LAMBDAREC_STORE_URL.*LAMBDAREC_STORE__URL"):
        Settings.load()


def test_unknown_nested_key_in_env_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_SPEED__NOPE", "1")
    with pytest.raises(ConfigError, match=r"unknown setting 'speed\.nope'"):
        Settings.load()


def test_test_endpoints_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_TEST_CASSANDRA", "127.0.0.1:19042")
    monkeypatch.setenv("LAMBDAREC_TEST_KAFKA", "127.0.0.1:19092")
    Settings.load()


def test_other_tools_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # deploy/local/services and the fixtures share the prefix; core settings know none of their names.
    monkeypatch.setenv("LAMBDAREC_SERVICES_DIR", "/tmp/services")
    monkeypatch.setenv("LAMBDAREC_SOME_FUTURE_TOOL", "1")
    assert Settings.load().store.url == "sqlite:///var/store"


def test_the_config_file_is_parsed_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    cfg = tmp_path / "c.toml"
    cfg.write_text("[batch]\ntop_k = 60\n")
    calls = []
    real = tomllib.load
    monkeypatch.setattr(tomllib, "load", lambda fh: calls.append(1) or real(fh))
    assert Settings.load(cfg).batch.top_k == 60
    assert len(calls) == 1


def test_bad_url_scheme_and_value_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"store\.url.*scheme 'postgres'"):
        Settings.load(overrides={"store": {"url": "postgres://h/db"}})
    with pytest.raises(ConfigError, match=r"batch\.on_bad_rows"):
        Settings.load(overrides={"batch": {"on_bad_rows": "ignore"}})


def test_ttl_must_cover_two_batch_periods() -> None:
    with pytest.raises(ConfigError, match="snapshot_ttl_s"):
        Settings.load(overrides={"store": {"snapshot_ttl_s": 86400}, "batch": {"period_hours": 24}})


def test_missing_or_broken_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[batch\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(bad)


def test_secrets_are_masked() -> None:
    s = Settings.load(
        overrides={"store": {"url": "cassandra://app:hunter2@h1,h2:9042/recs?dc=dc1", "password": "hunter2"}}
    )
    shown = str(s.masked())
    assert "hunter2" not in shown
    assert mask_url("cassandra://app:pw@h:9042/ks") == "cassandra://app:***@h:9042/ks"
    assert mask_url("kafka://h:9092/t") == "kafka://h:9092/t"


def test_consumer_group_and_dead_letter_follow_the_topic_unless_set(monkeypatch) -> None:
    """Issue 18 item 4: two deployments on one Kafka shared `lambdarec-speed` and `lambdarec-dead-letter`."""
    from lambdarec.settings import Settings

    a = Settings.load(overrides={"log": {"url": "kafka://k:9092/shop-a"}}).log
    b = Settings.load(overrides={"log": {"url": "kafka://k:9092/shop-b"}}).log
    assert (a.consumer_group, a.dead_letter) == ("shop-a-speed", "shop-a-dead-letter")
    assert {a.consumer_group, a.dead_letter}.isdisjoint({b.consumer_group, b.dead_letter})
    # SQLite: the directory is the deployment's own, and existing logs keep their dead-letter table
    local = Settings.load().log
    assert (local.consumer_group, local.dead_letter) == ("lambdarec-speed", "lambdarec-dead-letter")
    # set explicitly (file, environment, override): kept as given, whatever the topic
    monkeypatch.setenv("LAMBDAREC_LOG__CONSUMER_GROUP", "legacy-group")
    kept = Settings.load(overrides={"log": {"url": "kafka://k:9092/shop-a", "dead_letter": "dlq"}}).log
    assert (kept.consumer_group, kept.dead_letter) == ("legacy-group", "dlq")
    # a later change of the URL derives the unset ones again
    a.url = "kafka://k:9092/shop-c"
    assert (a.consumer_group, a.dead_letter) == ("shop-c-speed", "shop-c-dead-letter")


def test_a_renamed_key_in_the_file_names_its_new_key(tmp_path) -> None:
    cfg = tmp_path / "old.toml"
    cfg.write_text('[batch]\nfactors = 32\nray_actors = 2\nindex = "hnsw"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.load(cfg)
    message = str(caught.value)
    assert "'batch.factors' was renamed 'batch.train.factors'" in message
    assert "'batch.ray_actors' was renamed 'batch.ray.actors'" in message
    assert "'batch.index' was renamed 'batch.index.kind'" in message and "LAMBDAREC_BATCH__INDEX__KIND" in message


def test_a_renamed_environment_variable_names_its_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBDAREC_BATCH__TUNE_TRIALS", "5")
    with pytest.raises(ConfigError, match=r"'batch\.tune_trials' was renamed 'batch\.tune\.trials'.*TUNE__TRIALS"):
        Settings.load()


def test_every_renamed_key_points_at_a_setting() -> None:
    from lambdarec.settings import RENAMED

    for old, new in RENAMED.items():
        model: type = Settings
        for part in new.split("."):
            assert part in model.model_fields, f"{old} -> {new}"
            model = model.model_fields[part].annotation
