"""The lake contract on the local filesystem and on the real S3-compatible server."""

from __future__ import annotations

from pathlib import Path

from lambdarec.settings import LakeSettings
from tests.integration.lake import contract


def test_append_is_exactly_once(lake_settings: LakeSettings) -> None:
    contract.check_append_is_exactly_once(lake_settings)


def test_positions_name_each_partition_with_its_own(lake_settings: LakeSettings) -> None:
    contract.check_positions_name_each_partition_with_its_own(lake_settings)


def test_pinned_version_reads_what_it_held(lake_settings: LakeSettings) -> None:
    contract.check_pinned_version_reads_what_it_held(lake_settings)


def test_racing_writers_lose_no_commit(lake_settings: LakeSettings) -> None:
    contract.check_racing_writers_lose_no_commit(lake_settings)


def test_delete_user_and_erasures(lake_settings: LakeSettings) -> None:
    contract.check_delete_user_and_erasures(lake_settings)


def test_import_once_per_content(lake_settings: LakeSettings, tmp_path: Path) -> None:
    contract.check_import_once_per_content(lake_settings, tmp_path)


def test_vacuum_refuses_below_the_floor(lake_settings: LakeSettings) -> None:
    contract.check_vacuum_refuses_below_the_floor(lake_settings)
