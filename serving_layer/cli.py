"""``lambdarec serve`` (the HTTP service, with ``hash-key`` and ``new-key`` helpers) and ``lambdarec recommend``
(one user's list in-process, through the same code the GET endpoint runs).

Exit codes: 0 done; 1 the store failed, or holds no snapshot yet; 2 a bad input or setting.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated

import typer

from lambdarec.cli.common import EXIT_BAD_INPUT, ConfigOption, JsonOption, load_settings
from lambdarec.cli.store import EXIT_STORE_FAILED, StoreOption, configure_cli_logging, open_cli_store, store_errors

LogOption = Annotated[str | None, typer.Option("--log", help="Event log URL, overriding log.url.", show_default=False)]

serve_app = typer.Typer(add_completion=False, help="Run the HTTP serving layer (uvicorn); manage API keys.")
recommend_app = typer.Typer(add_completion=False)


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (serving.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port (serving.port).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Processes (serving.workers).")] = None,
    config: ConfigOption = None,
    store: StoreOption = None,
    log_url: LogOption = None,
) -> None:
    """Serve the HTTP API until SIGTERM/SIGINT. Settings come from --config and LAMBDAREC_* variables; the flags
    override them. `lambdarec serve hash-key KEY` prints the digest to configure an API key."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from serving_layer.head_limit import protocol_class

    configure_cli_logging()
    env = {
        "LAMBDAREC_STORE__URL": store,
        "LAMBDAREC_LOG__URL": log_url,
        "LAMBDAREC_SERVING__HOST": host,
        "LAMBDAREC_SERVING__PORT": port,
        "LAMBDAREC_SERVING__WORKERS": workers,
        "LAMBDAREC_CONFIG": str(config.resolve()) if config else None,
    }
    os.environ.update({k: str(v) for k, v in env.items() if v is not None})  # workers load settings from these
    settings = load_settings(None)  # fail here, with the reason, rather than in every worker
    s = settings.serving
    uvicorn.run(
        "serving_layer.app:create_app_from_env",
        factory=True,
        host=s.host,
        port=s.port,
        workers=s.workers,
        access_log=s.access_log,
        log_config=None,
        timeout_graceful_shutdown=10,
        http=protocol_class(s.http_parser),  # a head beyond max_head_bytes gets a 431, not a 400 or a reset
        h11_max_incomplete_event_size=s.max_head_bytes,  # either parser's head limit: a long URL is read whole, 414
    )


@serve_app.command("hash-key")
def hash_key_command(
    key: Annotated[str, typer.Argument(help="The API key; '-' reads it from stdin (keeps it out of shell history).")],
) -> None:
    """Print the SHA-256 digest of KEY, for serving.ingest_key_hashes or serving.admin_key_hashes."""
    from serving_layer.auth import hash_key

    raw = sys.stdin.readline().rstrip("\r\n") if key == "-" else key
    if not raw:
        typer.echo("error: the key is empty", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    typer.echo(hash_key(raw))


@serve_app.command("new-key")
def new_key_command(as_json: JsonOption = False) -> None:
    """Print a new random API key and its digest. Give the key to the client, the digest to the settings."""
    from serving_layer.auth import hash_key, new_key

    key = new_key()
    out = {"key": key, "sha256": hash_key(key)}
    typer.echo(json.dumps(out) if as_json else f"key:    {out['key']}\nsha256: {out['sha256']}")


def _items(raw: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (raw or "").split(",") if p.strip()))


@recommend_app.command()
def recommend(
    user: Annotated[str, typer.Argument(help="The user id.")],
    session: Annotated[
        str | None, typer.Option("--session", help="Session items, comma-separated, oldest first.")
    ] = None,
    k: Annotated[int | None, typer.Option("--k", "-k", help="Items to return (default serving.default_k).")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Ranked items to skip.")] = 0,
    exclude: Annotated[str | None, typer.Option("--exclude", help="Items never to recommend, comma-separated.")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Say why each item was picked.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
    config: ConfigOption = None,
    categories: Annotated[
        str | None, typer.Option("--categories", help="Only items in one of these categories, comma-separated.")
    ] = None,
    exclude_categories: Annotated[
        str | None, typer.Option("--exclude-categories", help="No item in these categories, comma-separated.")
    ] = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help="Attribute conditions, e.g. 'brand=acme;price<=50'.")
    ] = None,
) -> None:
    """One user's recommendations, ranked in-process exactly as GET /v1/users/USER/recommendations ranks them
    (in the user's experiment arm, if any, the catalog's rules and the filters included); --json prints the same
    body."""
    from lambdarec.experiments import arm_plans, served_assignment
    from lambdarec.rank.merge import MergeWeights
    from serving_layer.arms import Served
    from serving_layer.catalog_cache import CatalogCache
    from serving_layer.catalog_params import filters_of
    from serving_layer.model_cache import load_model
    from serving_layer.recommend import RecommendQuery, rank, read_states, shape
    from serving_layer.trending_cache import trending_for

    configure_cli_logging()
    settings, opened = open_cli_store(config, store)
    s = settings.serving
    k = s.default_k if k is None else k
    if not 1 <= k <= s.max_k:
        typer.echo(f"error: --k must be between 1 and {s.max_k} (serving.max_k); got {k}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        filters = filters_of(categories, exclude_categories, filter_, s)
    except ValueError as exc:
        typer.echo(f"error: --filter or the categories: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    with opened, store_errors():
        version = opened.current_version(max_age_s=0)
        if version is None:
            typer.echo("error: the store holds no published snapshot yet; run `lambdarec batch run` first", err=True)
            raise typer.Exit(EXIT_STORE_FAILED)
        found = served_assignment(settings.experiments, user)
        plan = arm_plans(settings)[found.experiment, found.arm] if found is not None and found.arm else None
        model = load_model(opened, plan.snapshot if plan is not None and plan.snapshot else version)
        shown = settings.speed.feedback.own_consumer
        state = read_states(opened, model.version, [user], len(model.item_ids), None, shown)[user]
        trending = trending_for(opened.read_trending(None), model, settings.speed.trending_half_life_s)
        catalog = CatalogCache(s, settings.store.request_timeout_s)
        catalog.prepare(model, opened)
    query = RecommendQuery(user, k, offset, _items(session), frozenset(_items(exclude)), explain,
                           experiment=found.experiment if plan else None, arm=plan.arm if plan else None,
                           filters=filters)  # fmt: skip
    if plan is None:
        served = Served(query, model, MergeWeights.from_settings(s), trending)
    else:
        served = Served(query, model, plan.weights, None if plan.popular_only else trending, plan)
    ranked_query, ranked_state = served.inputs(state)
    now = time.time()
    ranked, _ = rank(
        model, ranked_query, ranked_state, weights=served.weights, trending=served.trending, now_s=now,
        catalog=catalog.view_for(model, now),
    )  # fmt: skip
    body = shape(model, query, state, ranked, now, False)
    if as_json:
        typer.echo(body.model_dump_json())
        return
    typer.echo(
        f"{user}: snapshot {body.snapshot}, fresh state "
        + ("none" if body.fresh_state_age_s is None else f"{body.fresh_state_age_s:.0f} s old")
    )
    for rank_no, item in enumerate(body.items, start=offset + 1):
        why = f"  {item.reason}" if item.reason else ""
        typer.echo(f"{rank_no:>4}. {item.item_id:<24} {item.score:8.4f}  {item.source:<8}{why}")
