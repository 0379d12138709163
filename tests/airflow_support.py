"""Running DAGs for real in tests: `dag.test()` on the tests' migrated metadata database."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.runtime.support import RuntimeProcess

LOCAL_CONN_ID = "deployflow_local"
DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


@contextmanager
def local_connection(runtime: RuntimeProcess, conn_id: str = LOCAL_CONN_ID) -> Iterator[str]:
    """An Airflow connection (from the environment, as Airflow reads it) to a test runtime."""
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    token = (runtime.data_dir / "admin-token").read_text().strip()
    previous = os.environ.get(variable)
    os.environ[variable] = json.dumps(
        {"conn_type": "deployflow_local", "host": "127.0.0.1", "port": runtime.control_port, "password": token}
    )
    try:
        yield conn_id
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


@contextmanager
def connected_runtime(data_dir: Path, conn_id: str = LOCAL_CONN_ID) -> Iterator[RuntimeProcess]:
    """A real runtime for a test module, with an Airflow connection (`deployflow_local`) pointing at it."""
    runtime = RuntimeProcess(data_dir)
    runtime.start()
    try:
        with local_connection(runtime, conn_id):
            yield runtime
    finally:
        runtime.stop()


def run_dag(dag: Any, conf: dict[str, Any] | None = None, *, retries: int | None = None) -> Any:
    """Run the DAG to its end with `dag.test()`; ``retries`` overrides every task's (0: fail at once).

    A DAG built inside a test (outside the DAGs folder, or with a dag_id no DAG file declares) is
    in no parsed file, so it is written to the metadata database first, as the dag-processor would.
    """
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    if not Path(dag.fileloc).resolve().is_relative_to(DAGS_FOLDER) or not _serialized(dag.dag_id):
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

        DagBundlesManager().sync_bundles_to_db()  # a fresh database has no bundle row for the DAG to belong to
        bag = DagBag(dag_folder=os.devnull)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
    return dag.test(run_conf=conf or {})


def _serialized(dag_id: str) -> bool:
    from airflow.models.dag_version import DagVersion
    from airflow.utils.session import create_session

    with create_session() as session:
        return DagVersion.get_latest_version(dag_id, session=session) is not None


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)
