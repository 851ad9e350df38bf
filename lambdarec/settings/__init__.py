"""One settings tree for every layer, read from a TOML file and ``LAMBDAREC_*`` environment variables.

Precedence, highest first: keyword overrides (CLI flags), environment variables, the TOML file, defaults.
Environment variables name a field by its path with ``__`` between parts, e.g. ``LAMBDAREC_STORE__URL`` or
``LAMBDAREC_BATCH__TRAIN__FACTORS``. The file is ``--config PATH`` or ``LAMBDAREC_CONFIG``.

One module per section (``store``, ``eventlog``, ``batch``, ...); :mod:`lambdarec.settings.tree` reads the whole
tree; :mod:`lambdarec.settings.reference` renders ``docs/configuration.md`` from the fields' defaults and
descriptions.

Example
-------
>>> s = Settings.load(overrides={"batch": {"train": {"factors": 32}}})
>>> s.batch.train.factors
32
"""

from lambdarec.masking import mask_url
from lambdarec.settings.batch import BatchSettings, ColumnNames
from lambdarec.settings.batch_scoring import IndexSettings, RaySettings
from lambdarec.settings.batch_train import (
    DEFAULT_REGULARIZATION,
    GateSettings,
    TorchSettings,
    TrainSettings,
    TuneSettings,
)
from lambdarec.settings.catalog import CatalogSettings
from lambdarec.settings.eventlog import LOG_SCHEMES, KafkaLogSettings, LogSettings, SQLiteLogSettings, derived_log_name
from lambdarec.settings.experiments import ArmSettings, ExperimentSettings
from lambdarec.settings.lake import LAKE_SCHEMES, ArchiveSettings, LakeSettings
from lambdarec.settings.renamed import RENAMED
from lambdarec.settings.section import ConfigError, Section
from lambdarec.settings.serving import MergeSettings, ServingSettings
from lambdarec.settings.speed import EventSettings, SpeedSettings
from lambdarec.settings.store import STORE_SCHEMES, CassandraStoreSettings, SQLiteStoreSettings, StoreSettings
from lambdarec.settings.tree import (
    CONFIG_ENV,
    ENV_PREFIX,
    PROGRAM_VARIABLES,
    Settings,
    is_setting_variable,
    write_config,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_REGULARIZATION",
    "ENV_PREFIX",
    "LAKE_SCHEMES",
    "LOG_SCHEMES",
    "PROGRAM_VARIABLES",
    "RENAMED",
    "STORE_SCHEMES",
    "ArchiveSettings",
    "ArmSettings",
    "BatchSettings",
    "CassandraStoreSettings",
    "CatalogSettings",
    "ColumnNames",
    "ConfigError",
    "EventSettings",
    "ExperimentSettings",
    "GateSettings",
    "IndexSettings",
    "KafkaLogSettings",
    "LakeSettings",
    "LogSettings",
    "MergeSettings",
    "RaySettings",
    "SQLiteLogSettings",
    "SQLiteStoreSettings",
    "Section",
    "ServingSettings",
    "Settings",
    "SpeedSettings",
    "StoreSettings",
    "TorchSettings",
    "TrainSettings",
    "TuneSettings",
    "derived_log_name",
    "is_setting_variable",
    "mask_url",
    "write_config",
]
