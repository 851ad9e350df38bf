"""``lambdarec store``: create the store's schema, check that it answers, drop it. Also the ``--store`` option and the
error handling that ``lambdarec snapshots`` shares."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.logs import configure_logging
from lambdarec.settings import Settings, mask_url
from lambdarec.store import OnlineStore, SnapshotNotFoundError, SnapshotStateError, StoreError, open_store
from lambdarec.store.sqlite_schema import missing_files

EXIT_STORE_FAILED = 1

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL, overriding store.url: sqlite:///DIR, sqlite:////ABS/DIR or cassandra://H1,H2:9042/KEYSPACE.",
        show_default=False,
    ),
]

app = typer.Typer(
    help="Create the store's schema; check that it answers; drop it.", no_args_is_help=True, add_completion=False
)


@app.callback()
def _group() -> None:
    """Create the store's schema; check that it answers."""
    configure_cli_logging()


def configure_cli_logging() -> None:
    """Logs to stderr; the Cassandra driver's own tracebacks only at DEBUG, since our errors name the hosts."""
    configure_logging()
    if os.environ.get("LAMBDAREC_LOG_LEVEL", "").upper() != "DEBUG":
        logging.getLogger("cassandra").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Store errors as one line on stderr and an exit code: 2 for a wrong input, 1 when the store failed."""
    try:
        yield
    except (SnapshotNotFoundError, SnapshotStateError, ValueError) as exc:
        typer.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_STORE_FAILED) from None


def open_cli_store(config: Path | None, store_url: str | None) -> tuple[Settings, OnlineStore]:
    """The settings, and the store they (or ``--store``) name; a bad URL or an unreachable store ends the command."""
    settings = load_settings(config, {"store": {"url": store_url}} if store_url else None)
    with store_errors():
        return settings, open_store(settings)


@app.command("init")
def init(config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Create the keyspace and tables (Cassandra) or the database files (SQLite); safe to repeat.

    Rerunning it applies changed table TTLs (store.snapshot_ttl_s, store.fresh_ttl_s).
    """
    settings, opened = open_cli_store(config, store)
    with opened, store_errors():
        opened.init_schema()
    url = mask_url(settings.store.url)
    body: dict[str, object] = {"url": url, "ready": True}
    datacenters = getattr(opened, "datacenters", None)  # Cassandra: what the cluster reports
    if datacenters is not None:
        body["datacenters"] = datacenters
        _warn_without_datacenter(settings.store.url, datacenters)
    typer.echo(json.dumps(body) if as_json else f"store ready: {url}")


def _warn_without_datacenter(url: str, datacenters: list[str]) -> None:
    # A warning, not a refusal: a single-datacenter cluster works without it, and existing URLs keep working.
    if "dc=" in url.partition("?")[2] or not datacenters:
        return
    typer.echo(
        f"warning: store.url names no datacenter, so each process routes to whichever datacenter its first "
        f"contact point is in; the cluster has {', '.join(datacenters)}. Add ?dc={datacenters[0]} (the "
        f"process's local one) to store.url: {mask_url(url)}?dc={datacenters[0]}",
        err=True,
    )


@app.command("ping")
def ping(config: ConfigOption = None, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Check what serving reads: the current pointer in the store's keyspace (or files) and namespace.

    Exit 0 when it answers (and say which snapshot is current, or that none is published yet); 1 with what is
    missing (no keyspace, no SQLite files) or the hosts or path tried. Creates no store; a SQLite store of an
    older release gains its shown.sqlite (impressions rows moved there), as on any open.
    """
    settings = load_settings(config, {"store": {"url": store}} if store else None)
    url = mask_url(settings.store.url)
    with store_errors():
        if urlsplit(settings.store.url).scheme == "sqlite" and (missing := missing_files(settings.store.url)):
            raise StoreError(
                f"no SQLite store at {url}: {', '.join(str(p) for p in missing)} missing; "
                f"`lambdarec store init --store {settings.store.url}` creates it"
            )
        opened = open_store(settings)
        with opened:
            opened.ping()
            current = opened.current_version(max_age_s=0)
    if as_json:
        typer.echo(json.dumps({"url": url, "answers": True, "namespace": settings.store.namespace, "current": current}))
        return
    published = f"current snapshot {current}" if current else "no snapshot published yet (the batch job publishes one)"
    typer.echo(f"store answers: {url} (namespace {settings.store.namespace}: {published})")


@app.command("drop")
def drop(
    config: ConfigOption = None,
    store: StoreOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion; without it nothing is deleted.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete what `store init` created: the Cassandra keyspace, or the SQLite store's files, with every snapshot
    and all fresh state of every namespace in them. Irreversible: for throwaway stores (tests, demos, trials).

    Exit 2 without --yes (nothing deleted), 1 when the store does not answer.
    """
    settings = load_settings(config, {"store": {"url": store}} if store else None)
    url = mask_url(settings.store.url)
    if not yes:
        typer.echo(f"error: store drop deletes every snapshot and all fresh state at {url}; add --yes", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    with store_errors():
        opened = open_store(settings)
        with opened:
            opened.drop_schema()
    typer.echo(json.dumps({"url": url, "dropped": True}) if as_json else f"store dropped: {url}")
