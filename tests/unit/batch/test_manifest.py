"""The config hash: what shapes the snapshot enters it; placement (threads, engine, the Ray table) does not."""

from __future__ import annotations

from batch_layer.manifest import config_hash
from lambdarec.settings import BatchSettings


def test_placement_leaves_the_config_hash_alone() -> None:
    base = config_hash(BatchSettings())
    assert config_hash(BatchSettings(threads=3, engine="ray", ray={"actors": 4, "block_users": 10})) == base


def test_what_shapes_the_model_changes_the_config_hash() -> None:
    base = config_hash(BatchSettings())
    assert config_hash(BatchSettings(train={"factors": 32})) != base
    assert config_hash(BatchSettings(index={"kind": "hnsw"})) != base
