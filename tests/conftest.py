"""Test-wide settings: an Airflow home of the tests' own, set before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"

# One Airflow home (and SQLite metadata database, which has one writer) per pytest-xdist worker.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
os.environ.setdefault("AIRFLOW_HOME", str(CACHE / (f"airflow-test-{_WORKER}" if _WORKER else "airflow-test")))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# Model environments are built once and shared by the runtime, validation and every test.
os.environ.setdefault("DEPLOYFLOW_ENV_CACHE", str(CACHE / "envs"))
# Under root, model code runs as an unprivileged user, who must be able to reach the Python the model
# environments are built from; the tests' Python may live where it cannot (pyenv under /root, pytest's
# owner-only temporary folders). Tests run model code as root then, except the isolation tests, which
# run it as that user from a Python and folders it can reach.
os.environ.setdefault("DEPLOYFLOW_CHILD_USER", "root")


def _fernet_key() -> str:
    """One key for the tests' metadata database, kept beside it: unit-test mode would otherwise make a
    new key per process, and triggers stored encrypted by one process could not be read by the next."""
    path = Path(os.environ["AIRFLOW_HOME"]) / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", _fernet_key())


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
