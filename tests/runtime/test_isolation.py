"""Model code cannot see the runtime's secrets: not in its environment, not on disk, not as root.

Real runtimes, real replicas and batch workers, real environment builds (uv or pip). The part
that drops to an unprivileged user runs only as root, from a Python that user can reach.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployflow.inference_server import InferenceServer, ServerStartError
from deployflow.local.client import LocalRuntimeClient
from deployflow.platform.batch import BatchInput, BatchJobSpec
from deployflow.platform.specs import ModelRef
from deployflow.runtime.environments import EnvironmentCache
from deployflow.runtime.isolation import CHILD_USER, CHILD_USER_VARIABLE, child_user, model_python
from tests.runtime.batch_support import job_document
from tests.runtime.support import ENV_CACHE, SAMPLE_MODEL, RuntimeProcess
from tests.validation.mlflow_models import ROWS, pyfunc_predict, save_iris_model, signature_columns

pytestmark = pytest.mark.slow

TOKEN = "t" * 40
SECRETS = {
    "AIRFLOW_CONN_DEPLOYFLOW_LOCAL": '{"conn_type": "deployflow_local", "password": "admin-token"}',
    "AIRFLOW__CORE__FERNET_KEY": "not-for-model-code",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=secret",
    "DEPLOYFLOW_RUNTIME_TOKEN": TOKEN,
}
SYSTEM_PYTHON = Path("/usr/bin/python3.11")

# Answers with what model code can see: its environment's names, its user, what opening each path listed
# in probe-paths.txt gives, and whether it can write into its own package.
PROBE = """
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def attempt(action):
    try:
        action()
        return "opened"
    except OSError as e:
        return type(e).__name__


def probe():
    with open(os.path.join(HERE, "probe-paths.txt")) as f:
        paths = [line.strip() for line in f if line.strip()]
    return {
        "environment": sorted(os.environ),
        "uid": os.getuid(),
        "opened": {path: attempt(lambda: open(path, "rb").close()) for path in paths},
        "package_writable": attempt(lambda: open(os.path.join(HERE, "written-by-model-code"), "w").close()),
    }
"""
SCORE = (
    PROBE
    + """

def init():
    pass


def run(raw_data):
    return probe()
"""
)
BATCH_SCORE = (
    PROBE
    + """

def init():
    pass


def run(mini_batch):
    with open(mini_batch[0]) as f:  # as every batch script does: its input must be readable to it
        f.read()
    return [[os.path.basename(mini_batch[0]), json.dumps(probe())]]
"""
)
# A requirement with no setup.py: its in-tree build backend records the environment it was built in.
BACKEND = """
import base64
import hashlib
import json
import os
import zipfile

NAME = "envreport-1.0"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {
        "envreport_keys.json": json.dumps(sorted(os.environ)),
        f"{NAME}.dist-info/METADATA": "Metadata-Version: 2.1\\nName: envreport\\nVersion: 1.0\\n",
        f"{NAME}.dist-info/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{NAME}.dist-info/RECORD,,")
    files[f"{NAME}.dist-info/RECORD"] = "\\n".join(record) + "\\n"
    wheel = f"{NAME}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel
"""
PYPROJECT = """
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "envreport"
version = "1.0"
"""


def probe_package(folder: Path, requirements: str | None = None, paths: tuple[Path, ...] = ()) -> Path:
    """A package whose score.py and batch script report what they can see, ``paths`` opened among it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe-paths.txt").write_text("".join(f"{path}\n" for path in paths))
    if requirements is None:
        shutil.copy(SAMPLE_MODEL / "requirements.txt", folder / "requirements.txt")
    else:
        (folder / "requirements.txt").write_text(requirements)
    (folder / "score.py").write_text(textwrap.dedent(SCORE))
    (folder / "batch_score.py").write_text(textwrap.dedent(BATCH_SCORE))
    (folder / "sample-request.json").write_text("{}")
    (folder / "sample-response.json").write_text("{}")
    (folder / "model").mkdir(exist_ok=True)
    (folder / "model" / "weights.txt").write_text("none\n")
    return folder


def assert_no_secret(names: list[str]) -> None:
    assert "PATH" in names  # the report is real
    leaked = sorted(set(names) & set(SECRETS))
    assert not leaked, f"model code sees {leaked}"
    assert not [name for name in names if name.startswith("AIRFLOW")]


def batch_probe(client: LocalRuntimeClient, package: Path, inputs: Path, out: Path, **settings) -> dict:
    """Run the probe as a batch job over ``inputs``; the first file's report."""
    document = job_document("probe", str(inputs), str(out), package_path=str(package),
                            scoring_script="batch_score.py", **settings)  # fmt: skip
    job = client.wait_for_job(client.submit_job(document)["id"], timeout_s=300)
    assert job["status"] == "Completed", job["error"]
    first = next(csv.reader((out / "predictions.csv").read_text().splitlines()))
    return json.loads(first[1])


@pytest.fixture
def secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_an_environment_build_sees_none_of_the_callers_secrets(secrets_in_environment: None, tmp_path: Path) -> None:
    requirement = tmp_path / "envreport"
    requirement.mkdir()
    (requirement / "pyproject.toml").write_text(PYPROJECT)
    (requirement / "backend.py").write_text(textwrap.dedent(BACKEND))

    python = EnvironmentCache(tmp_path / "envs").ensure_requirements(f"envreport @ {requirement.as_uri()}\n")

    reports = list(python.parent.parent.glob("lib/python*/site-packages/envreport_keys.json"))
    assert len(reports) == 1, "the requirement was not built and installed"
    assert_no_secret(json.loads(reports[0].read_text()))


@pytest.fixture(scope="module")
def secret_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RuntimeProcess, LocalRuntimeClient]]:
    """A runtime started with secrets in its environment, its admin token among them."""
    runtime = RuntimeProcess(tmp_path_factory.mktemp("secret-runtime") / "data")
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)
    try:
        runtime.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    try:
        with LocalRuntimeClient(runtime.control_url, TOKEN) as client:
            client.register_model("diabetes", SAMPLE_MODEL, version="1")  # the model batch jobs name
            yield runtime, client
    finally:
        runtime.stop()


def test_replicas_and_batch_workers_see_none_of_the_runtimes_secrets(
    secret_runtime: tuple[RuntimeProcess, LocalRuntimeClient], tmp_path: Path
) -> None:
    runtime, client = secret_runtime
    package = probe_package(tmp_path / "probe")
    client.register_model("probe", package, version="1")
    client.put_endpoint("probe")
    client.put_deployment("probe", "blue", model="probe:1")
    deployment = client.wait_for_deployment("probe", "blue", timeout_s=300)
    assert deployment["provisioning_state"] == "Succeeded", deployment["error"]
    client.set_traffic("probe", {"blue": 100})

    answer = client.score(client.get_endpoint("probe")["scoring_uri"], {}, client.keys("probe")["primary_key"])
    assert_no_secret(answer.body["environment"])

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.csv").write_text("x\n1\n")
    report = batch_probe(client, package, inputs, tmp_path / "out")
    assert_no_secret(report["environment"])


def walk(folder: Path) -> Iterator[tuple[Path, int]]:
    for item in [folder, *folder.rglob("*")]:
        if not item.is_symlink():
            yield item, stat.S_IMODE(item.stat().st_mode)


def test_the_data_dir_is_owner_only_wal_shm_and_logs_included(
    secret_runtime: tuple[RuntimeProcess, LocalRuntimeClient], tmp_path: Path
) -> None:
    runtime, client = secret_runtime
    package = probe_package(tmp_path / "probe2")
    client.register_model("modes", package, version="1")
    client.put_endpoint("modes")
    client.put_deployment("modes", "blue", model="modes:1")
    assert client.wait_for_deployment("modes", "blue", timeout_s=300)["provisioning_state"] == "Succeeded"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a.csv").write_text("x\n1\n")
    batch_probe(client, package, inputs, tmp_path / "out")

    names = {item.name for item, _ in walk(runtime.data_dir)}
    assert {"state.sqlite", "state.sqlite-wal", "state.sqlite-shm", "0.log", "job.log", "worker-0.log"} <= names
    loose = [(str(item), oct(mode)) for item, mode in walk(runtime.data_dir)
             if mode & 0o077 or (item.is_file() and mode not in (0o600, 0o700))]  # fmt: skip
    assert not loose, f"readable by others: {loose[:10]}"


def test_an_empty_or_short_admin_token_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = RuntimeProcess(tmp_path / "empty")
    empty.data_dir.mkdir()
    (empty.data_dir / "admin-token").write_text("\n")
    with pytest.raises(RuntimeError, match="has 0 characters; at least 32"):
        empty.start()

    monkeypatch.setenv("DEPLOYFLOW_RUNTIME_TOKEN", "short")
    short = RuntimeProcess(tmp_path / "short")
    with pytest.raises(RuntimeError, match=r"DEPLOYFLOW_RUNTIME_TOKEN has 5 characters"):
        short.start()


def test_a_new_admin_token_is_written_whole_and_owner_only(tmp_path: Path) -> None:
    runtime = RuntimeProcess(tmp_path / "data")
    runtime.start()
    try:
        token_file = runtime.data_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token_file.read_text()) >= 32
        assert [p.name for p in runtime.data_dir.iterdir() if p.name.startswith(".")] == []  # no temporary left
        with runtime.client() as client:
            assert client.list_endpoints() == []
    finally:
        runtime.stop()


# ---- as root: model code runs as an unprivileged user ------------------------------------------------


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A folder the child user can pass through (pytest's own are owner-only all the way down)."""
    folder = Path(tempfile.mkdtemp(prefix="deployflow-isolation-"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


root_only = pytest.mark.skipif(os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
                               reason="needs root, and a Python outside /root the child user can run")  # fmt: skip
SERVER_ONLY = "azureml-inference-server-http==1.5.1\n"


@root_only
def test_as_root_model_code_cannot_read_the_admin_token_or_the_state(
    reachable_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CHILD_USER_VARIABLE, raising=False)
    runtime = RuntimeProcess(reachable_tmp / "data", extra_args=["--model-python", str(SYSTEM_PYTHON)])
    runtime.start()
    try:
        token, state = runtime.data_dir / "admin-token", runtime.data_dir / "state.sqlite"
        secrets = (token, state, state.with_name("state.sqlite-wal"))
        with runtime.client() as client:
            package = probe_package(reachable_tmp / "probe", SERVER_ONLY, secrets)
            client.register_model("probe", package, version="1")
            client.register_model("diabetes", SAMPLE_MODEL, version="1")  # the model batch jobs name
            client.put_endpoint("probe")
            client.put_deployment("probe", "blue", model="probe:1")
            deployment = client.wait_for_deployment("probe", "blue", timeout_s=300)
            assert deployment["provisioning_state"] == "Succeeded", deployment["error"]
            client.set_traffic("probe", {"blue": 100})

            answer = client.score(
                client.get_endpoint("probe")["scoring_uri"], {}, client.keys("probe")["primary_key"]
            ).body
            assert answer["uid"] == child_user(CHILD_USER).uid != 0
            assert answer["opened"] == {str(path): "PermissionError" for path in secrets}
            assert answer["package_writable"] == "PermissionError"  # the registered model is shared read-only
            assert_no_secret(answer["environment"])

            inputs = reachable_tmp / "inputs"
            inputs.mkdir()
            (inputs / "a.csv").write_text("x\n1\n")
            report = batch_probe(client, package, inputs, reachable_tmp / "out")
            assert report["uid"] == answer["uid"]
            assert report["opened"] == {str(path): "PermissionError" for path in secrets}
            assert_no_secret(report["environment"])
            assert 'POST /score HTTP/1.1" 200' in client.logs("probe", "blue")  # written through its descriptor
    finally:
        runtime.stop()


@root_only
def test_as_root_an_mlflow_batch_job_runs_deployflows_script_as_the_child_user(
    reachable_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CHILD_USER_VARIABLE, raising=False)
    model = save_iris_model(reachable_tmp / "iris-mlflow")
    inputs = reachable_tmp / "inputs"
    inputs.mkdir()
    with open(inputs / "a.csv", "w", newline="") as f:
        csv.writer(f).writerows([signature_columns(model), *ROWS])
    out = reachable_tmp / "out"
    runtime = RuntimeProcess(reachable_tmp / "data", extra_args=["--model-python", str(SYSTEM_PYTHON)])
    runtime.start()
    try:
        with runtime.client() as client:
            client.register_model("iris", model, version="1")
            spec = BatchJobSpec(name="mlflow-as-child", model=ModelRef("iris", "1"), package_path=str(model),
                                scoring_script=None, input=BatchInput(str(inputs)), output_uri=str(out))  # fmt: skip
            job = client.wait_for_job(client.submit_job(spec.to_dict())["id"], timeout_s=600)
    finally:
        runtime.stop()

    assert job["status"] == "Completed", job["error"]
    rows = list(csv.reader((out / "predictions.csv").read_text().splitlines()))
    assert rows == [["a.csv", str(i), str(value)] for i, value in enumerate(pyfunc_predict(model, ROWS))]


@root_only
def test_as_root_validates_server_runs_as_the_child_user(reachable_tmp: Path) -> None:
    user = child_user(CHILD_USER)
    assert user is not None
    python = EnvironmentCache(reachable_tmp / "envs", base_python=str(SYSTEM_PYTHON), user=user).ensure_requirements(
        SERVER_ONLY
    )
    secret = reachable_tmp / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    package = probe_package(reachable_tmp / "probe", SERVER_ONLY, (secret,))

    with InferenceServer(python, package, start_timeout_s=120, request_timeout_s=30, user=user) as server:
        answer = server.send(b"{}")
        log = server.log_tail()

    assert answer.status == 200, log
    assert answer.body["uid"] == user.uid and answer.body["opened"] == {str(secret): "PermissionError"}
    assert answer.body["package_writable"] == "opened"  # its own copy, not the caller's package
    assert not (package / "written-by-model-code").exists()
    assert_no_secret(answer.body["environment"])


def test_validate_refuses_a_python_the_child_user_cannot_reach(tmp_path: Path, monkeypatch) -> None:
    user = child_user(CHILD_USER) if os.geteuid() == 0 else None
    if user is None or not str(Path(sys.executable).resolve()).startswith("/root/"):
        pytest.skip("needs root and a Python under /root")
    package = probe_package(tmp_path / "probe")
    python = EnvironmentCache(ENV_CACHE).ensure(SAMPLE_MODEL / "requirements.txt")
    with pytest.raises(ServerStartError, match="out of reach of user deployflow"):
        with InferenceServer(python, package, start_timeout_s=30, request_timeout_s=5, user=user):
            pass


@root_only
def test_as_root_with_a_python_under_root_the_runtime_builds_model_environments_from_the_systems(
    reachable_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's main command as root where Python lives under /root (pyenv): no --model-python given.
    if not str(Path(sys.executable).resolve()).startswith("/root/"):
        pytest.skip("needs a Python under /root")
    monkeypatch.delenv(CHILD_USER_VARIABLE, raising=False)
    user = child_user(CHILD_USER)
    assert user is not None

    assert Path(model_python(user)).resolve() == SYSTEM_PYTHON.resolve()
    assert model_python(None) == sys.executable  # no child user: the runtime's own
    assert model_python(user, "/opt/python") == "/opt/python"  # asked for: kept (and checked at start)

    runtime = RuntimeProcess(reachable_tmp / "data", extra_args=["--env-cache-dir", str(reachable_tmp / "envs")])
    runtime.start()
    try:
        with runtime.client() as client:
            assert client.health()
        assert f"model environments are built from {SYSTEM_PYTHON.resolve()}" in runtime.log_path.read_text()
    finally:
        runtime.stop()
