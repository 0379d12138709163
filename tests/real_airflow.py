"""A real Airflow 3 deployment for tests that ``dag.test()`` cannot prove.

``dag.test()`` runs every task in the test's own process, one after another. Overlapping DAG runs,
a human answering an approval through the REST API, a task process killed and retried by the
scheduler, and deferred tasks resumed by the triggerer need the real components:
``airflow api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and ``triggerer``,
each a subprocess in its own process group, sharing an AIRFLOW_HOME and SQLite database of their own.
With ``executor="CeleryExecutor"`` and a ``broker_url`` (a Redis the test started), the scheduler
queues tasks on Celery and ``celery_workers`` ``airflow celery worker`` processes run them, each
``worker_concurrency`` at a time; a worker's processes see ``REAL_AIRFLOW_WORKER`` set to its name.

Use it once per test module (starting takes ~30 s on two cores)::

    with RealAirflow(tmp / "home", dags_folder) as airflow:
        run_id = airflow.trigger("my_dag", {"x": 1})
        airflow.wait_for("my_dag", run_id, {"success"})

Connections reach every component as ``AIRFLOW_CONN_*`` variables: those of the test process
and those in ``env``. Component logs are ``<home>/<component>.log``; task logs under ``<home>/logs``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet

from deployflow.runtime.processes import dying_with_runtime, tail
from deployflow.runtime.serving.replicas import free_port

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = Path(sys.executable).with_name("airflow")
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
WORKER_NAME_VARIABLE = "REAL_AIRFLOW_WORKER"
USERNAME = "admin"
START_TIMEOUT_S = 120
# The grace period after SIGTERM. Short: the triggerer alone would wait 10 s for its trigger process.
STOP_TIMEOUT_S = 5
POLL_S = 0.5
TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowError(RuntimeError):
    """A component exited, did not come up, or a DAG file did not import; the message says which."""


DATABASE_BUSY_RETRIES = 5


class RealAirflow:
    """Airflow's four components on loopback, with a REST client logged in as the admin user."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        env: dict[str, str] | None = None,
        parallelism: int = 4,
        executor: str = "LocalExecutor",
        broker_url: str | None = None,
        celery_workers: int = 2,
        worker_concurrency: int = 1,
    ) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.parallelism = parallelism
        self.extra_env = dict(env or {})
        if "AIRFLOW_HOME" in self.extra_env:
            raise AirflowError("env sets AIRFLOW_HOME: the deployment's home is the `home` argument")
        if executor not in EXECUTORS:
            raise AirflowError(f"executor {executor!r} is not one of {EXECUTORS}")
        if executor == "CeleryExecutor" and not broker_url:
            raise AirflowError("the CeleryExecutor needs broker_url: start a Redis for it (tests/redis_server.py)")
        if executor == "CeleryExecutor" and not (celery_workers >= 1 and worker_concurrency >= 1):
            raise AirflowError("the CeleryExecutor needs at least one worker with at least one slot")
        self.executor = executor
        self.broker_url = broker_url
        self.workers = [f"celery-worker-{i + 1}" for i in range(celery_workers)] if executor == "CeleryExecutor" else []
        self.worker_concurrency = worker_concurrency
        self.processes_by_component: dict[str, subprocess.Popen[bytes]] = {}
        self.sessions: set[int] = set()  # the components' session ids, kept after they exit
        self.client: httpx.Client | None = None

    def __enter__(self) -> RealAirflow:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Write the home, migrate its database, start the components, log in, wait for the DAGs."""
        if not self.dags_folder.is_dir():
            raise AirflowError(f"DAGs folder {self.dags_folder} does not exist: create it and write the DAGs first")
        if self.home.exists() and any(self.home.iterdir()):
            raise AirflowError(f"home {self.home} is not empty: give each deployment a fresh directory")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "airflow.cfg").write_text(self._config())
        migrate = subprocess.run(
            [str(AIRFLOW), "db", "migrate"], env=self.environment(), capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise AirflowError(f"airflow db migrate failed ({migrate.returncode}):\n{migrate.stderr[-4000:]}")
        for component in COMPONENTS:
            self._launch(component)
        for worker in self.workers:
            self._launch(worker)
        deadline = time.monotonic() + START_TIMEOUT_S
        self._wait_healthy(deadline)
        self._wait_workers_ready(deadline)
        self.client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self._token()}"})
        self._wait_parsed(deadline)

    def stop(self) -> None:
        """SIGTERM the components' process groups, SIGKILL them after a grace period, then any process left.

        Task processes run in process groups of their own (their supervisor makes them), but in
        their component's session: the last sweep finds them, and any orphan, by session.
        """
        if self.client is not None:
            self.client.close()
            self.client = None
        for process in self.processes_by_component.values():
            _signal_group(process.pid, signal.SIGTERM)  # supervisors pass it on to their tasks
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes_by_component.values():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
        for process in self.processes():
            _signal(process, signal.SIGKILL)
        for process in self.processes_by_component.values():
            process.wait(timeout=5)  # reaped: not even a zombie of ours is left
        deadline = time.monotonic() + 10
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left:
            raise AirflowError(f"processes of the deployment outlived SIGKILL: {left}")

    def processes(self) -> list[psutil.Process]:
        """Live processes of this deployment: components, their workers and task processes.

        Found by session (each component leads one), not by environment or name: Airflow's workers
        retitle themselves, which overwrites what /proc shows of their environment.
        """
        found = []
        for process in psutil.process_iter():
            try:
                if os.getsid(process.pid) in self.sessions and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except (psutil.NoSuchProcess, ProcessLookupError):
                continue
        return found

    def environment(self) -> dict[str, str]:
        """The components' environment: the test's, less its Airflow settings, plus connections and ``env``."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_") or _passed_on(k)}
        return {
            **inherited,
            "AIRFLOW_HOME": str(self.home),
            "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **self.extra_env,
        }

    def _config(self) -> str:
        settings = {
            "core": {
                "executor": self.executor,
                "dags_folder": self.dags_folder,
                "plugins_folder": REPO / "plugins",
                "load_examples": "False",
                "dags_are_paused_at_creation": "False",
                "parallelism": self.parallelism,
                "fernet_key": Fernet.generate_key().decode(),
                "simple_auth_manager_users": f"{USERNAME}:admin",
                "simple_auth_manager_passwords_file": self.passwords_file,
                "execution_api_server_url": f"{self.base_url}/execution/",
            },
            "database": {"sql_alchemy_conn": f"sqlite:///{self.home / 'airflow.db'}"},
            "logging": {"base_log_folder": self.home / "logs"},
            "api": {
                "host": "127.0.0.1",
                "port": self.port,
                "base_url": self.base_url,
                "workers": 1,
                "secret_key": secrets.token_urlsafe(64),
            },
            # Every component signs or checks the JWTs of this home with one key: set here, not made per process.
            "api_auth": {"jwt_secret": secrets.token_urlsafe(64)},
            "scheduler": {
                "scheduler_idle_sleep_time": 0.5,
                # A task whose supervisor died with it is failed after 20 s without a heartbeat, not 300 s;
                # heartbeats every 2 s keep a loaded machine's slow beat from counting as a death.
                "task_instance_heartbeat_timeout": 20,
                "task_instance_heartbeat_timeout_detection_interval": 2,
            },
            "workers": {"min_heartbeat_interval": 2},
            # A DAG file written or changed after start is parsed within seconds, not minutes.
            "dag_processor": {"refresh_interval": 5, "min_file_process_interval": 10},
        }
        if self.executor == "CeleryExecutor":
            # Results in Redis beside the queue: SQLite's one writer stays the scheduler's and the API's.
            settings["celery"] = {"broker_url": self.broker_url, "result_backend": self.broker_url}
        lines = []
        for section, options in settings.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in options.items())
            lines.append("")
        return "\n".join(lines)

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def _launch(self, component: str) -> None:
        env = self.environment()
        if component in self.workers:
            # No gossip or mingle: the workers need not know each other, and start a few seconds sooner.
            args = [str(AIRFLOW), "celery", "worker", "--celery-hostname", f"{component}@%h"]
            args += ["--concurrency", str(self.worker_concurrency), "--without-gossip", "--without-mingle"]
            args.append("--skip-serve-logs")
            env[WORKER_NAME_VARIABLE] = component
        else:
            args = [str(AIRFLOW), component]
        if component in ("scheduler", "triggerer"):
            args.append("--skip-serve-logs")  # Airflow's log server binds every interface; tasks' logs are local files
        with open(self.log_path(component), "ab") as log:
            process = subprocess.Popen(
                args,
                env=env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=dying_with_runtime(),
            )
        self.processes_by_component[component] = process
        self.sessions.add(process.pid)

    def _check_running(self) -> None:
        for component, process in self.processes_by_component.items():
            if process.poll() is not None:
                raise AirflowError(
                    f"airflow {component} exited with {process.returncode}; its log ends:\n"
                    f"{tail(self.log_path(component), 40)}"
                )

    def _wait_healthy(self, deadline: float) -> None:
        """Until the API answers and reports the database, scheduler, triggerer and dag-processor healthy."""
        health: Any = None
        while time.monotonic() < deadline:
            self._check_running()
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                health = None
            if health and all(part.get("status") == "healthy" for part in health.values()):
                return
            time.sleep(POLL_S)
        raise AirflowError(f"Airflow not healthy within {START_TIMEOUT_S}s; last health: {health}")

    def _wait_workers_ready(self, deadline: float) -> None:
        """Until every Celery worker says it is ready (it has connected to the broker and will take tasks)."""
        waiting = list(self.workers)
        while waiting:
            self._check_running()
            waiting = [w for w in waiting if not _says_ready(self.log_path(w), w)]
            if waiting and time.monotonic() > deadline:
                raise AirflowError(f"Celery workers {waiting} not ready within {START_TIMEOUT_S}s")
            time.sleep(POLL_S)

    def _token(self) -> str:
        """Log in as a user would: the generated password from the passwords file, POST /auth/token."""
        password = json.loads(self.passwords_file.read_text())[USERNAME]
        response = httpx.post(
            f"{self.base_url}/auth/token", json={"username": USERNAME, "password": password}, timeout=10
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def _wait_parsed(self, deadline: float) -> None:
        """Until every DAG file of the folder has its DAGs in the API or an import error (which fails here)."""
        expected = {path.relative_to(self.dags_folder).as_posix() for path in _dag_files(self.dags_folder)}
        while True:
            self._check_running()
            errors = self.get("/importErrors")["import_errors"]
            if errors:
                raise AirflowError(
                    "DAG files did not import:\n" + "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                )
            parsed = {dag["relative_fileloc"] for dag in self.get("/dags", limit=1000)["dags"]}
            if expected <= parsed:
                return
            if time.monotonic() > deadline:
                raise AirflowError(f"DAG files not parsed within {START_TIMEOUT_S}s: {sorted(expected - parsed)}")
            time.sleep(POLL_S)

    # --- REST helpers ----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to ``/api/v2<path>``; an error status raises with Airflow's own detail."""
        if self.client is None:
            raise AirflowError("Airflow is not running: use RealAirflow as a context manager")
        for _ in range(DATABASE_BUSY_RETRIES):
            response = self.client.request(method, f"/api/v2{path}", timeout=30, **kwargs)
            # SQLite has one writer: under several runs at once a write can lose the lock, and the API
            # server rolls it back and answers 500 "Database error". Asking again is what a user would do.
            if response.status_code != 500 or "Database error" not in response.text:
                break
            time.sleep(1.0)
        if response.is_error:
            raise AirflowError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a manual run of ``dag_id`` now, with ``conf``; its run id."""
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's task instances by task id (unmapped tasks): state, try_number, start_date, end_date, pid…"""
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=1000)["task_instances"]
        return {ti["task_id"]: ti for ti in found if ti["map_index"] == -1}

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance, the current one last: try_number, state, start/end dates, pid…"""
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")["task_instances"]

    def wait_for(self, dag_id: str, run_id: str, states: Iterable[str], timeout: float = 60) -> str:
        """Wait until the run is in one of ``states``; fail at once if it ends in another. The state."""

        def check() -> tuple[str, bool]:
            state = self.run_state(dag_id, run_id)
            return state, state in TERMINAL_RUN_STATES

        return self._wait(f"run {dag_id}/{run_id}", check, set(states), timeout, dag_id, run_id)

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout: float = 60
    ) -> dict[str, Any]:
        """Wait until the task instance is in one of ``states``; fail at once if its run ends first. The TI."""

        def check() -> tuple[str | None, bool]:
            ended = self.run_state(dag_id, run_id) in TERMINAL_RUN_STATES  # first: then the TI's state is final
            return self.task_instances(dag_id, run_id).get(task_id, {}).get("state"), ended

        self._wait(f"task {dag_id}/{run_id}/{task_id}", check, set(states), timeout, dag_id, run_id)
        return self.task_instances(dag_id, run_id)[task_id]

    def _wait(
        self, what: str, check: Callable[[], tuple[str | None, bool]], wanted: set[str], timeout: float,
        dag_id: str, run_id: str,
    ) -> str:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            state, ended = check()
            if state in wanted:
                return state
            if ended or time.monotonic() > deadline:
                why = "its run ended" if ended else f"after {timeout}s"
                raise AirflowError(
                    f"{what} is {state}, not {' or '.join(sorted(wanted))} ({why}); "
                    f"task instances: {_summary(self.task_instances(dag_id, run_id))}"
                )
            time.sleep(POLL_S)

    def hitl_details(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """What a human-in-the-loop task asks (subject, body, options, defaults) and any answer given."""
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails")

    def answer_hitl(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: dict[str, Any] | None = None,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Answer a human-in-the-loop task through the REST API, as the UI does."""
        return self.request(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
            json={"chosen_options": chosen_options, "params_input": params_input or {}},
        )

    def task_pid(self, dag_id: str, run_id: str, task_id: str) -> int:
        """PID of the process running the task's code: the TI's ``pid``, which its supervisor reports at start."""
        ti = self.task_instances(dag_id, run_id)[task_id]
        if ti["state"] != "running" or not ti["pid"]:
            raise AirflowError(f"task {dag_id}/{run_id}/{task_id} is {ti['state']}, not running: it has no process")
        return ti["pid"]

    def kill_task(self, dag_id: str, run_id: str, task_id: str, *, with_supervisor: bool = False) -> int:
        """SIGKILL the process running the task, as the kernel's OOM killer would; its PID.

        ``with_supervisor`` kills the task's supervisor (the executor's worker) first, so no one reports
        the death: only the scheduler's heartbeat timeout can find the task then.
        """
        pid = self.task_pid(dag_id, run_id, task_id)
        if with_supervisor:
            os.kill(psutil.Process(pid).ppid(), signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        return pid


def _says_ready(log: Path, worker: str) -> bool:
    """Whether the worker's log has Celery's ``<worker>@<host> ready.`` line."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return False
    return re.search(rf"\b{re.escape(worker)}@\S+ ready\.", text) is not None


def _passed_on(name: str) -> bool:
    return name.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))


def _dag_files(folder: Path) -> list[Path]:
    """Python files the dag-processor parses: like its safe mode, those that mention both airflow and dag."""
    files = []
    for path in sorted(folder.rglob("*.py")):
        text = path.read_bytes().lower()
        if b"airflow" in text and b"dag" in text:
            files.append(path)
    return files


def _summary(tis: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{task_id}={ti['state']}(try {ti['try_number']})" for task_id, ti in tis.items()) or "none"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal(process: psutil.Process, sig: signal.Signals) -> None:
    try:
        process.send_signal(sig)
    except psutil.NoSuchProcess:
        pass
