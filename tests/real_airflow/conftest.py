"""One real Airflow deployment per test module, running the small DAGs of ``dags/``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_airflow import RealAirflow

DAGS = Path(__file__).resolve().parent / "dags"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAirflow]:
    root = tmp_path_factory.mktemp("real-airflow")
    dags_folder = shutil.copytree(DAGS, root / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    with RealAirflow(root / "home", dags_folder) as deployment:
        yield deployment
