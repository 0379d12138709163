"""Two runs at once: a task that naps, in a DAG that allows two active runs."""

from __future__ import annotations

import time

from airflow.sdk import dag, task


@dag(schedule=None, max_active_runs=2, tags=["real-airflow-test"])
def overlap():
    @task
    def nap() -> None:
        time.sleep(5)

    nap()


overlap()
