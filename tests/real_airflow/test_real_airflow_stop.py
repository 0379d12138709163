"""Leaving a real deployment while a task runs leaves no process of it behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from tests.real_airflow import RealAirflow

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"


def test_no_process_of_the_deployment_outlives_it(tmp_path: Path) -> None:
    dags_folder = tmp_path / "dags"
    dags_folder.mkdir()
    shutil.copy(DAGS / "killed.py", dags_folder)
    with RealAirflow(tmp_path / "home", dags_folder) as airflow:
        run = airflow.trigger("killed", {"tries_file": str(tmp_path / "tries"), "sleep_s": 300})
        airflow.wait_for_task("killed", run, "sleepy", {"running"}, timeout=60)
        task = psutil.Process(airflow.task_pid("killed", run, "sleepy"))
        started = [psutil.Process(p.pid) for p in airflow.processes_by_component.values()]
        started += [child for p in started for child in p.children(recursive=True)]
        assert task in started  # the task process descends from the scheduler, through its worker

    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert airflow.processes() == []
