"""``[lake]`` and ``[archive]``: the master dataset and the archiver that fills it."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from lambdarec.settings.section import Section

LAKE_SCHEMES = ("", "file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


class LakeSettings(Section):
    """The master dataset: the append-only Delta Lake table of every event that entered, and its dead letters."""

    url: str | None = Field(
        "var/lake",
        description="Root of the lake: a local directory (relative or absolute, or `file:///...`), or "
        "`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`. The events table lives at "
        "`URL/events`, dead letters at `URL/dead_letters`, erasures at `URL/erasures`. Unset: no lake.",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="delta-rs object-store options (e.g. `AWS_ENDPOINT_URL`, `AWS_REGION`, "
        "`AWS_ALLOW_HTTP`); the usual `AWS_*`, `GOOGLE_*`, `AZURE_*` environment variables apply too. "
        "On `s3://` the lake sets `AWS_CONDITIONAL_PUT=etag` unless given, so concurrent writers commit safely; "
        "the unsafe-rename option is refused.",
    )
    target_file_mb: int = Field(128, ge=1, description="`lake compact` rewrites small files towards this size.")
    vacuum_min_retain_hours: float = Field(
        168.0,
        ge=0,
        description="Safety floor of `lake vacuum --retain-hours`: files a reader pinned to a version younger "
        "than this may still need are never removed.",
    )
    commit_retries: int = Field(
        20, ge=1, description="Attempts of one lake commit that races other writers before it fails."
    )

    @field_validator("url")
    @classmethod
    def _lake_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.strip():
            raise ValueError("lake URL must not be empty; unset it to run without a lake")
        scheme = urlsplit(url).scheme
        if len(scheme) > 1 and scheme not in LAKE_SCHEMES:  # one letter: a Windows drive
            raise ValueError(f"lake URL {url!r} has scheme {scheme!r}; expected a path, file, s3, gs or az")
        return url

    @field_validator("storage_options")
    @classmethod
    def _no_unsafe_rename(cls, options: dict[str, str]) -> dict[str, str]:
        if any(k.upper() == "AWS_S3_ALLOW_UNSAFE_RENAME" and v.lower() == "true" for k, v in options.items()):
            raise ValueError(
                "AWS_S3_ALLOW_UNSAFE_RENAME loses commits when two writers race; use conditional puts "
                "(AWS_CONDITIONAL_PUT=etag) or a locking provider"
            )
        return options


class ArchiveSettings(Section):
    """The archiver: event log -> lake, exactly once."""

    consumer_group: str = Field("lambdarec-archive", description="The archiver's own consumer group on the event log.")
    max_batch_events: int = Field(50_000, ge=1, description="Most events in one lake commit (a micro-batch).")
    max_batch_s: float = Field(
        10.0, gt=0, description="Longest time a micro-batch collects events before it is committed to the lake."
    )
    poll_max_records: int = Field(5000, ge=1, description="Records taken from the log per poll.")
    # Waiting out a log or lake that does not answer (capped exponential backoff with jitter).
    retry_initial_s: float = Field(
        0.2, gt=0, description="First wait before retrying a log or lake call that failed; doubles each time."
    )
    retry_max_s: float = Field(10.0, gt=0, description="Longest wait between retries of a failing log or lake.")
    give_up_after_s: float = Field(
        0.0,
        ge=0,
        description="Exit (non-zero) once the log or the lake has failed for this long without a break; "
        "0 retries forever, resuming by itself when it answers again.",
    )
