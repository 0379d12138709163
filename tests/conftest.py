"""Test-wide settings: an Airflow home of the tests' own, set before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"

os.environ.setdefault("AIRFLOW_HOME", str(CACHE / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# Model environments are built once and shared by the runtime, validation and every test.
os.environ.setdefault("DEPLOYFLOW_ENV_CACHE", str(CACHE / "envs"))


def _migrate_airflow_db() -> None:
    """Create the metadata database once; `airflow db migrate` is idempotent and takes seconds."""
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".migrated"
    if marker.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    marker.touch()


_migrate_airflow_db()
