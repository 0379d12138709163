"""A deferrable sensor: the worker hands the wait to the triggerer and frees its slot."""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import dag, task


@dag(schedule=None, tags=["real-airflow-test"])
def deferred():
    wait = WaitSensor(task_id="wait", time_to_wait=timedelta(seconds=5), deferrable=True)

    @task
    def after() -> str:
        return "done"

    wait >> after()


deferred()
