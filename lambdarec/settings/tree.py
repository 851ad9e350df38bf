"""The whole settings tree, and how it is read: the TOML file (parsed once), the environment, then overrides.

Which ``LAMBDAREC_*`` variables are settings is a rule, not a list of other programs' names: a variable is a
setting when it names a section (``LAMBDAREC_STORE``) or a path in one (``LAMBDAREC_STORE__URL``). The program's own
variables that are not settings are :data:`PROGRAM_VARIABLES`; any other prefixed name belongs to another tool (the
test fixtures, ``deploy/local/services``) and is left alone, except a section name followed by a single ``_``, a
slip for ``__`` that is refused with the right spelling.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from lambdarec.masking import mask_secrets, mask_url, register_secret
from lambdarec.settings.batch import BatchSettings
from lambdarec.settings.eventlog import LogSettings
from lambdarec.settings.experiments import ExperimentSettings, check_names
from lambdarec.settings.lake import ArchiveSettings, LakeSettings
from lambdarec.settings.renamed import renamed_message
from lambdarec.settings.section import ConfigError
from lambdarec.settings.serving import ServingSettings
from lambdarec.settings.speed import EventSettings, SpeedSettings
from lambdarec.settings.store import StoreSettings

ENV_PREFIX = "LAMBDAREC_"
CONFIG_ENV = "LAMBDAREC_CONFIG"
# The program's own variables that are not settings: the settings file, the log output, the dataset cache, and
# the merge's numpy steps instead of its compiled kernel (lambdarec.rank.kernel: read before any settings are).
PROGRAM_VARIABLES = (CONFIG_ENV, "LAMBDAREC_LOG_LEVEL", "LAMBDAREC_LOG_FORMAT", "LAMBDAREC_CACHE",
                     "LAMBDAREC_FUSED_MERGE")  # fmt: skip


class _EnvSource(EnvSettingsSource):
    """The environment, less the prefixed variables that are not settings (see :func:`is_setting_variable`)."""

    def _load_env_vars(self):  # type: ignore[override]
        env = super()._load_env_vars()
        return {k: v for k, v in env.items() if is_setting_variable(k.upper())}


class Settings(BaseSettings):
    """The whole settings tree."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    store: StoreSettings = Field(default_factory=StoreSettings, description="The online store.")
    log: LogSettings = Field(default_factory=LogSettings, description="The event log.")
    batch: BatchSettings = Field(default_factory=BatchSettings, description="The nightly batch job.")
    speed: SpeedSettings = Field(default_factory=SpeedSettings, description="The speed layer consumer.")
    serving: ServingSettings = Field(default_factory=ServingSettings, description="The HTTP serving layer.")
    events: EventSettings = Field(default_factory=EventSettings, description="Bounds on event values.")
    lake: LakeSettings = Field(default_factory=LakeSettings, description="The master dataset (Delta Lake).")
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings, description="The archiver (log -> lake).")
    experiments: dict[str, ExperimentSettings] = Field(
        default_factory=dict, description="A/B experiments by name: `[experiments.NAME]` (see below)."
    )

    @model_validator(mode="after")
    def _experiment_names(self) -> Settings:
        check_names(self.experiments)
        return self

    @model_validator(mode="after")
    def _ttl_covers_two_periods(self) -> Settings:
        if self.store.snapshot_ttl_s <= 2 * self.batch.period_hours * 3600:
            raise ValueError(
                f"store.snapshot_ttl_s ({self.store.snapshot_ttl_s}) must exceed twice batch.period_hours "
                f"({self.batch.period_hours} h = {2 * self.batch.period_hours * 3600:.0f} s)"
            )
        return self

    @model_validator(mode="after")
    def _impressions_topic_has_consumer(self) -> Settings:
        if self.log.impressions_topic is not None and not self.speed.feedback.own_consumer:
            raise ValueError(
                f"log.impressions_topic ({self.log.impressions_topic!r}) needs speed.feedback.own_consumer = true: "
                "only the impressions consumer (`lambdarec speed run --impressions`) reads that topic"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # ``Settings()`` reads keyword values and the environment; ``load`` adds the file it parsed itself.
        return (init_settings, _EnvSource(settings_cls))

    @classmethod
    def load(cls, config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
        """Read the settings: ``config`` (or ``$LAMBDAREC_CONFIG``), then the environment, then ``overrides``.

        Raises
        ------
        ConfigError
            naming each unknown or invalid key and where it came from (a renamed key: its new name).
        """
        raw = config if config is not None else os.environ.get(CONFIG_ENV)
        path = Path(raw) if raw else None
        data = read_config_file(path) if path is not None else {}
        check_env_names(cls)
        merged = _merge(_merge(data, _EnvSource(cls)()), overrides or {})
        try:
            settings = cls.model_validate(merged)  # validates the merged data alone: no source is read twice
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc, path)) from None
        settings.register_secrets()
        return settings

    def register_secrets(self) -> None:
        """Have every secret of these settings masked in errors and logs (see ``lambdarec.masking``)."""
        for secret in (self.store.cassandra.password, self.log.kafka.password):
            register_secret(secret.get_secret_value() if secret is not None else None)
        for url in (self.store.url, self.log.url):
            try:
                register_secret(urlsplit(url).password)
            except ValueError:
                continue

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret (passwords, credentials in URLs) masked."""
        data = self.model_dump(mode="json")
        for section in ("store", "log"):
            data[section]["url"] = mask_url(data[section]["url"])
        lake = data["lake"]
        lake["url"] = mask_url(lake["url"]) if lake["url"] else None
        secret = ("SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "SAS", "ACCOUNT_KEY", "CREDENTIAL")
        lake["storage_options"] = {
            k: "***" if any(w in k.upper() for w in secret) else v for k, v in lake["storage_options"].items()
        }
        return data


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file's data; ``ConfigError`` when it is missing or not TOML."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (from --config or ${CONFIG_ENV})")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _merge(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    """``low`` updated by ``high``, tables merged key by key."""
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def is_setting_variable(name: str, sections: tuple[str, ...] | None = None) -> bool:
    """Whether the environment variable ``name`` sets a part of the settings tree.

    >>> is_setting_variable("LAMBDAREC_STORE__URL"), is_setting_variable("LAMBDAREC_TEST_KAFKA")
    (True, False)
    """
    if not name.startswith(ENV_PREFIX) or name in PROGRAM_VARIABLES:
        return False
    rest = name[len(ENV_PREFIX) :]
    return "__" in rest or rest.lower() in (sections or tuple(Settings.model_fields))


def check_env_names(cls: type[Settings]) -> None:
    """Refuse a prefixed variable that looks meant as a setting but names none (pydantic-settings ignores them)."""
    sections = tuple(cls.model_fields)
    for name in os.environ:
        if not name.startswith(ENV_PREFIX) or name in PROGRAM_VARIABLES:
            continue
        rest = name[len(ENV_PREFIX) :]
        head = rest.split("__", 1)[0].lower()
        slip = "__" not in rest and any(head.startswith(f"{s}_") for s in sections)
        if ("__" in rest and head not in sections) or slip:
            raise ConfigError(
                f"unknown setting in environment variable ${name}: '{head}' is not a section "
                f"({', '.join(sorted(sections))}); nested keys use '__', e.g. {ENV_PREFIX}STORE__URL"
            )


def describe_errors(exc: ValidationError, path: Path | None) -> str:
    """One line per validation error, naming the key, where it came from and, for a renamed key, its new name."""
    where = f"config file {path}, " if path else ""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        env = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
        moved = renamed_message(key, err["input"], ENV_PREFIX)
        if moved is not None:
            lines.append(f"{moved} (check {where}${env} or the overrides)")
        elif err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{key}' (check {where}${env} or the overrides)")
        else:
            lines.append(f"invalid setting '{key}': {err['msg']} (got {err.get('input')!r})")
    return mask_secrets("; ".join(lines))


def write_config(path: Path, text: str) -> Path:
    """Write a settings file only if it loads: ``text`` goes to a temporary file beside ``path``, is loaded as
    settings (``ConfigError`` and the file left as it was if not), then replaces ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        Settings.load(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path
