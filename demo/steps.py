"""The demo's eight steps, in order; each prints what it did and adds it to the run's JSON summary.

1. the interaction log (synthesised with a taste drift, or the caller's), imported into the lake; 2. the nightly
batch job, reading the lake, into the embedded store; 3. the speed layer on the embedded event log; 4. the HTTP
server; 5. one user's list before and after a burst of fresh events posted over HTTP; 6. the archiver puts the
posted events into the lake, a second nightly reads it (its interaction count grows by exactly the events
posted) and serving flips to it, the user's list still reflecting them; 7. a sampled replay with its HTML
report; 8. where everything is.

Example
-------
>>> run = DemoRun(DemoOptions(Path("var/demo")), make_console(stderr=False))   # doctest: +SKIP
>>> summary = run.run(); run.cleanup()                                          # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from demo import console as show
from demo.live import Api, SnapshotView, show_fresh_events
from demo.services import (
    Service,
    ServiceError,
    free_port,
    port_in_use,
    record_servers,
    start_service,
    stop_recorded,
    stop_services,
    wait_ready,
)
from demo.workspace import DemoLog, Workspace, WorkspaceError, callers_log, sqlite_url, synth_spec, synthetic_log
from lambdarec.settings import Settings

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class DemoOptions:
    """The ``lambdarec demo`` flags."""

    directory: Path
    interactions: str | None = None
    port: int | None = None
    keep_serving: bool = False
    users: int = 10_000
    items: int = 3_000
    events: int = 500_000
    seed: int = 42
    sample: int = 2_000
    fresh: bool = False


class DemoRun:
    """One demo run: the steps, the child processes it started, and the summary it builds."""

    def __init__(self, opts: DemoOptions, console: Console) -> None:
        self.opts, self.console = opts, console
        self.ws = Workspace(opts.directory)
        self.services: list[Service] = []
        self.finished = False
        self._bars = sys.stderr.isatty()  # tqdm progress bars, for a person watching a terminal
        self.summary: dict[str, Any] = {"status": "running", "dir": str(self.ws.root.resolve()), "timings_s": {}}

    def run(self) -> dict[str, Any]:
        """Run every step; the summary (also kept in ``self.summary``)."""
        t_all = time.perf_counter()
        self._prepare()
        steps = (
            ("The interaction log", self._log),
            ("The nightly batch job -> a snapshot in the store", self._batch),
            ("The speed layer, consuming the event log", self._speed),
            ("The HTTP server", self._serve),
            ("Fresh events change a user's list", self._live),
            ("The archiver, the lake and the second nightly: the posted events reach the model", self._loop),
            ("Replay: the same code, scored on the log's future", self._replay),
            ("Where everything is, and what to try next", self._where),
        )
        for n, (title, action) in enumerate(steps, start=1):
            show.step(self.console, n, title)
            t0 = time.perf_counter()
            action()
            self.summary["timings_s"][f"{n}"] = round(time.perf_counter() - t0, 2)
        self.summary["timings_s"]["total"] = round(time.perf_counter() - t_all, 2)
        self.finished = True
        if self.summary["status"] == "running":
            self.summary["status"] = "ok"
        return self.summary

    def cleanup(self) -> None:
        """Stop every child process, unless the run finished and ``--keep-serving`` asked to leave them."""
        if self.services and not (self.finished and self.opts.keep_serving):
            self._stop_services()

    # ---- before step 1: the folder, the port, the key, the settings ---------------------------------------------

    def _prepare(self) -> None:
        from lambdarec.cli.common import load_settings
        from serving_layer.auth import hash_key, new_key

        if stopped := stop_recorded(self.ws):
            show.note(self.console, f"stopped the servers an earlier --keep-serving run left (pids {stopped})")
        if self.opts.fresh:
            self.ws.wipe()
        self.ws.create()
        if self.opts.port is not None and port_in_use(HOST, self.opts.port):
            raise WorkspaceError(f"--port {self.opts.port} is in use on {HOST}; pick another or leave it out")
        self.port = self.opts.port or free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.key = new_key()
        source = str(Path(self.opts.interactions).resolve()) if self.opts.interactions else str(self.ws.log)
        config = self.ws.write_settings(
            interactions=source, host=HOST, port=self.port, ingest_digest=hash_key(self.key)
        )
        # The demo runs on its own embedded store and log whatever LAMBDAREC_STORE__URL and friends say.
        self.urls = {"store": sqlite_url(self.ws.store), "log": sqlite_url(self.ws.events)}
        urls = {**self.urls, "lake": str(self.ws.lake.resolve())}
        self.settings: Settings = load_settings(config, {k: {"url": v} for k, v in urls.items()})
        self.summary["paths"] = {
            "dir": show.shown(self.ws.root),
            "config": show.shown(config),
            "log": show.shown(source),
            "store": show.shown(self.ws.store),
            "events": show.shown(self.ws.events),
            "lake": show.shown(self.ws.lake),
            "logs": show.shown(self.ws.logs),
            "report": show.shown(self.ws.report / "report.html"),
        }

    # ---- the steps -------------------------------------------------------------------------------------------

    def _log(self) -> None:
        o = self.opts
        if o.interactions:
            self.log: DemoLog = callers_log(str(Path(o.interactions).resolve()), self.settings.batch)
        else:
            spec = synth_spec(o.users, o.items, o.events, o.seed)
            self.log = synthetic_log(self.ws, spec, self.settings.batch, progress=self._bars)
        show.log_summary(self.console, self.log.summary, self.log.source, self.log.reused)
        self.summary["log"] = {**self.log.summary, "source": self.log.source, "reused": self.log.reused}

    def _batch(self) -> None:
        from batch_layer.job import QualityGateError

        show.note(
            self.console,
            f"as of {self.log.end.isoformat()} (just after the log's last event), into {self.urls['store']}",
        )
        try:
            result = self._run_batch(force=False)
        except QualityGateError as exc:  # a rerun on another log: show the refusal, then publish for the demo
            show.note(self.console, f"{exc}\n    publishing anyway (--force), as this is a demo")
            result = self._run_batch(force=True)
        m = result.manifest
        show.batch_summary(self.console, m, result.message)
        self.version = m.get("version")
        keep = ("version", "published", "reason", "counts", "metrics", "timings_s", "as_of")
        self.summary["batch"] = {k: m[k] for k in keep if k in m} | {"message": result.message}

    def _speed(self) -> None:
        args = ["speed", "run", "--config", str(self.ws.config.resolve())]
        args += ["--store", self.urls["store"], "--log", self.urls["log"]]
        speed = start_service("speed", args, self.ws, outlive=self.opts.keep_serving)
        self.services.append(speed)
        self._processes()
        show.note(self.console, f"lambdarec speed run (pid {speed.pid}) on {self.urls['log']}")
        show.note(self.console, f"output: {show.shown(speed.log_path)}")

    def _serve(self) -> None:
        args = ["serve", "--config", str(self.ws.config.resolve()), "--host", HOST, "--port", str(self.port)]
        args += ["--store", self.urls["store"], "--log", self.urls["log"]]
        serve = start_service("serve", args, self.ws, outlive=self.opts.keep_serving)
        self.services.append(serve)
        self._processes()
        with self.console.status(f"waiting for {self.url}/readyz"):
            took = wait_ready(f"{self.url}/readyz", serve, READY_TIMEOUT_S)
        show.note(self.console, f"serving on {self.url} (pid {serve.pid}), ready after {took:.1f} s")
        show.note(
            self.console, f"ingest key (shown once; {show.shown(self.ws.config)} holds only its SHA-256): {self.key}"
        )
        self.summary["serving"] = {"url": self.url, "port": self.port, "ready_s": round(took, 2)}

    def _live(self) -> None:
        api = Api(self.url, self.key)
        view = SnapshotView.served(self.settings, self.version)
        live = show_fresh_events(api, self.log, self.console, seed=self.opts.seed, snapshot=view)
        if not live["applied"]["seen"]:
            self.summary["status"] = "failed"
            show.note(self.console, "the speed layer's output:\n" + self.services[0].tail())
        self.summary |= live

    def _loop(self) -> None:
        from batch_layer.archive import Archiver
        from demo.loop import close_the_loop

        with Archiver(self.settings) as archiver:
            archived = archiver.run(until_idle_s=1.0)
        self.summary["loop"] = close_the_loop(
            self.settings,
            Api(self.url, self.key),
            self.console,
            archived=archived.to_json(),
            user=self.summary.get("user"),
            first=self.summary.get("batch", {}),
            before=self.summary.get("after"),
            run_batch=self._run_batch,
        )
        if not self.summary["loop"]["ok"]:
            self.summary["status"] = "failed"
        if not self.opts.keep_serving:
            self._stop_services()
            show.note(self.console, "stopped the speed layer and the server (--keep-serving leaves them running)")

    def _replay(self) -> None:
        from lambdarec.rank.merge import MergeWeights
        from replay.protocol import ReplayConfig, run_replay
        from replay.report import build_report, format_table, write_report
        from replay.variants import standard_variants

        cfg = ReplayConfig(
            self.log.source,
            split_at=self.log.split_at,
            sample=self.opts.sample,
            seed=self.opts.seed,
            progress=self._bars,
        )
        show.note(self.console, f"train on events up to {cfg.split_at.isoformat()}, score {cfg.sample:,} later ones")
        run = run_replay(self.settings, cfg, standard_variants(MergeWeights.from_settings(self.settings.serving)))
        doc = build_report(run)
        html, js = write_report(doc, self.ws.report)
        self.console.out(format_table(doc), highlight=False)
        show.note(self.console, f"report: {html.resolve().as_uri()}")
        keep = ("variants", "ratios", "events_scored", "users", "events_replayed", "split_at", "k", "timings_s")
        self.summary["replay"] = {k: doc[k] for k in keep if k in doc} | {"html": str(html), "json": str(js)}

    def _where(self) -> None:
        keep = self.opts.keep_serving
        if keep:
            record_servers(self.ws, self.services, self.url)
            self.summary["ingest_key"] = self.key  # the servers run on: a script needs the key to post
        split = self.log.split_at.isoformat()
        show.next_steps(self.console, self.summary["paths"], self.summary.get("user", "u1"), split, self.url, keep)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _run_batch(self, *, force: bool, as_of: Any = None, settings: Settings | None = None) -> Any:
        """``run_batch`` at the log's end (or ``as_of``), reading the lake (the log file is imported into it once);
        a job lock left by an interrupted earlier run is waited out (it lapses ``batch.lock_ttl_s`` after that run
        stopped renewing it)."""
        from batch_layer.archive.imports import import_file
        from batch_layer.job import JobLockedError, run_batch
        from lambdarec.lake import open_lake

        settings = settings or self.settings
        imported = import_file(open_lake(settings), self.log.source, settings.batch)
        self.summary.setdefault("lake_import", imported.to_dict())
        if imported.appended:
            show.note(
                self.console, f"imported {imported.appended:,} events of {show.shown(self.log.source)} into the lake"
            )
        ttl = settings.batch.lock_ttl_s
        deadline, noted = time.monotonic() + ttl + 5, False
        while True:
            try:
                return run_batch(settings, as_of=as_of or self.log.end, force=force, progress=self._bars)
            except JobLockedError:
                if time.monotonic() > deadline:
                    raise
                if not noted:
                    show.note(
                        self.console,
                        f"the store's job lock is held (an interrupted run?); it lapses within {ttl:.0f} s",
                    )
                    noted = True
                with self.console.status("waiting for the job lock"):
                    time.sleep(min(max(deadline - time.monotonic(), 0.5), 5.0))

    def _processes(self) -> None:
        self.summary["processes"] = {s.name: {"pid": s.pid, "exit": None} for s in self.services}

    def _stop_services(self) -> None:
        codes = stop_services(self.services)
        for name, code in codes.items():
            self.summary.setdefault("processes", {}).setdefault(name, {})["exit"] = code
        self.services = []


__all__ = ["DemoOptions", "DemoRun", "ServiceError", "WorkspaceError"]
