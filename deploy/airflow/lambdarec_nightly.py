"""Airflow DAG: the lambdarec nightly job, ``lambdarec batch run --json``, once a day.

Copy this file into the DAGs folder of an Airflow (2.4 or later, or 3) whose workers have lambdarec installed
(``pip install lambdarec``) and its settings in their environment (``LAMBDAREC_CONFIG`` or ``LAMBDAREC_*``
variables, see docs/configuration.md). The job's exit code decides what the task does:

=====  ==================================================  ==========================================
code   meaning                                             task
=====  ==================================================  ==========================================
0      published, or nothing to do (inputs unchanged)      success; the manifest goes to XCom
1      failure (store unavailable, crash)                  failed and retried (``retries``)
2      bad input (missing or malformed interactions)       failed at once, no retry: fix the input
3      quality gate: the model regressed                   failed at once, no retry: a person decides
4      locked: another batch job is running on the store   skipped: that job is doing the work
=====  ==================================================  ==========================================

First ``lake_wait`` runs ``lambdarec lake wait --until END`` (the data interval's end): it succeeds once the
archiver has put into the lake every event the log held then, so a nightly never trains on a partial day; exit 75
(still behind after ``--timeout``) fails the task, which is retried. The job then reads the lake.

Each run passes its data interval's end as ``--as-of``, so a retry, a manual rerun or a backfill computes the
same snapshot as the first try (and, if that try had published, ends at once with "nothing to do").

To run the job in Kubernetes instead, the same command fits a KubernetesPodOperator with the lambdarec image;
map the codes as above (``skip_on_exit_code=4``), or use the CronJob in deploy/k8s/batch-cronjob.yaml.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

DAG_ID = "lambdarec_nightly"
SCHEDULE = "30 2 * * *"  # 02:30 UTC, as deploy/k8s/batch-cronjob.yaml
COMMAND = ["lambdarec", "batch", "run", "--json", "--no-progress"]
# Before training, wait until the lake holds every event the log had at the end of the data interval.
WAIT_COMMAND = ["lambdarec", "lake", "wait", "--timeout", "3600", "--json"]
EXIT_WAIT_TIMEOUT = 75  # `lake wait`: the archiver is still behind; the task fails and is retried

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_GATE, EXIT_LOCKED = 1, 2, 3, 4


def run_batch(as_of: str | None) -> dict:
    """Run the job and turn its exit code into the task's outcome."""
    argv = [*COMMAND, "--as-of", as_of] if as_of else list(COMMAND)
    # stderr (the job's log lines) is inherited, so it streams into the task log while the job runs; stdout is
    # the --json manifest, or the error body.
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    try:
        body = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        body = {"error": proc.stdout.strip()[-2000:]}
    error = body.get("error") or "see the job's log above"
    if proc.returncode == 0:
        return body
    print(json.dumps(body, indent=2, sort_keys=True))  # the error body: for the gate, the holdout metrics
    if proc.returncode == EXIT_LOCKED:
        raise AirflowSkipException(f"another batch job holds the store's lock; skipping this run: {error}")
    if proc.returncode == EXIT_GATE:
        raise AirflowFailException(
            f"quality gate refused to publish: {error}. The current snapshot stays in service. Inspect the "
            "holdout metrics in the task log; if the drop is expected, rerun with `lambdarec batch run --force`."
        )
    if proc.returncode == EXIT_BAD_INPUT:
        raise AirflowFailException(f"bad input, not retried: {error}. Fix the interaction export, then clear the task.")
    raise AirflowException(f"lambdarec batch run failed with exit {proc.returncode}: {error}")


def wait_for_lake(until: str | None) -> dict:
    """``lambdarec lake wait``: 0 when the archiver has caught up; 75 (still behind) fails the task for a retry."""
    argv = [*WAIT_COMMAND, "--until", until or "midnight"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode == 0:
        return json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode == EXIT_WAIT_TIMEOUT:
        raise AirflowException(f"the archiver has not caught up with {until}: {proc.stdout.strip()[-2000:]}")
    raise AirflowException(f"lambdarec lake wait failed with exit {proc.returncode}: {proc.stdout.strip()[-2000:]}")


@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),  # noqa: UP017 (Airflow may run Python < 3.11)
    catchup=False,  # a missed night is covered by the next one, which reads the whole lookback window
    max_active_runs=1,  # never two jobs at once; the store's job lock (exit 4) is the second line of defence
    dagrun_timeout=timedelta(hours=6),
    default_args={"owner": "recommendations", "retries": 2, "retry_delay": timedelta(minutes=15)},
    tags=["lambdarec", "recommendations"],
    doc_md=__doc__,
)
def lambdarec_nightly() -> None:
    @task(task_id="lake_wait", execution_timeout=timedelta(hours=1, minutes=5))
    def lake_wait(data_interval_end: datetime | None = None) -> dict:
        return wait_for_lake(data_interval_end.isoformat() if data_interval_end else None)

    @task(task_id="batch_run", execution_timeout=timedelta(hours=4))
    def batch_run(data_interval_end: datetime | None = None) -> dict:
        return run_batch(data_interval_end.isoformat() if data_interval_end else None)

    lake_wait() >> batch_run()


lambdarec_nightly()
