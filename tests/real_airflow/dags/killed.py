"""A task that records each try in a file, then sleeps: long enough for a test to kill it mid-sleep."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from airflow.sdk import dag, task


@dag(schedule=None, tags=["real-airflow-test"])
def killed():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def sleepy(ti=None, dag_run=None) -> None:
        with open(Path(dag_run.conf["tries_file"]), "a") as f:
            f.write(f"{ti.try_number}\n")
        time.sleep(dag_run.conf["sleep_s"])

    sleepy()


killed()
