"""The lake on the local filesystem and on a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from lambdarec.settings import LakeSettings
from tests.conftest import S3_BUCKET

pytest.register_assert_rewrite("tests.integration.lake.contract")


@pytest.fixture(params=["local", "s3"])
def lake_settings(request: pytest.FixtureRequest, tmp_path: Path) -> LakeSettings:
    """A fresh, empty lake: a temporary directory, or a fresh prefix in the S3 server's bucket."""
    if request.param == "local":
        return LakeSettings(url=str(tmp_path / "lake"))
    options = request.getfixturevalue("s3_storage_options")
    return LakeSettings(url=f"s3://{S3_BUCKET}/test-{secrets.token_hex(6)}/lake", storage_options=options)
