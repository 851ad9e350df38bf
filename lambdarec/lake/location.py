"""Where the lake lives: a local directory, or ``s3://``, ``gs://``, ``az://`` with ``lake.storage_options`` and the
usual environment variables. On S3 commits use conditional puts (``aws_conditional_put = etag``); the unsafe rename
is never enabled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from lambdarec.lake.errors import LakeError

OBJECT_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def resolve_location(url: str, options: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The lake root as delta-rs wants it and the storage options (conditional puts on S3)."""
    scheme = urlsplit(url).scheme
    opts = dict(options)
    if scheme in OBJECT_SCHEMES:
        if (
            scheme in ("s3", "s3a")
            and not any(k.lower() == "aws_conditional_put" for k in opts)
            and not os.environ.get("AWS_CONDITIONAL_PUT")
        ):
            opts["aws_conditional_put"] = "etag"
        if os.environ.get("AWS_S3_ALLOW_UNSAFE_RENAME", "").lower() == "true":
            raise LakeError("AWS_S3_ALLOW_UNSAFE_RENAME=true loses commits when writers race; unset it")
        return url, opts
    path = Path(urlsplit(url).path if scheme == "file" else url).expanduser().resolve()
    return str(path), opts
