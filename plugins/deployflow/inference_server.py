"""Azure ML's own inference server, started for one package on a loopback port, to be asked over HTTP.

Validation must call ``score.py`` the way Azure ML does — the plain ``run(raw_data)``
contract, inference-schema decorated functions (the server parses the body and answers bad
input itself), ``AMLResponse`` answers, ``AMLRequest`` raw access — so it does not imitate
the server: it runs the real ``azureml-inference-server-http`` in the model's environment,
through the same launcher as the runtime's replicas (which binds loopback), and talks HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from deployflow.checks import Answer, Sample
from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.isolation import ChildUser, IsolationError, hand_over, let_through, require_reachable
from deployflow.runtime.processes import open_log, tail
from deployflow.runtime.serving.replicas import LOOPBACK, free_port, server_command, server_environment, spawn_server

READY_POLL_S = 0.1


class ServerStartError(RuntimeError):
    """The server exited or never became healthy: score.py failed to import or in init()."""


class InferenceServer:
    """``with InferenceServer(python, package) as server: server.send(body)``; stopped on exit.

    With a ``user`` (the caller is root), the server runs as that user on a copy of the package it owns,
    in a folder only it and the caller can reach; its log is written through an inherited descriptor.
    """

    def __init__(
        self, python: Path, package_dir: Path, *, start_timeout_s: float, request_timeout_s: float,
        user: ChildUser | None = None,
    ) -> None:  # fmt: skip
        self.python = python.absolute()  # not resolve(): a venv's python is a symlink that must stay one
        self.package_dir = package_dir.resolve()
        self.user = user
        self.start_timeout_s = start_timeout_s
        self.request_timeout_s = request_timeout_s
        self.port = 0
        self.ready_ms = 0.0
        self.process: subprocess.Popen[bytes] | None = None
        self._logdir = tempfile.TemporaryDirectory(prefix="deployflow-validate-")
        self.log_path = Path(self._logdir.name) / "server.log"

    def __enter__(self) -> InferenceServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    def start(self) -> None:
        self.port = free_port()
        if self.user is not None:
            self.package_dir = self._hand_over_package(self.user)
        args = server_command(self.python, self.package_dir, self.port, worker_count=1)
        env = server_environment(self.package_dir, self.user)
        started = time.monotonic()
        with open_log(self.log_path) as log_file:
            self.process = spawn_server(args, env, self.package_dir, log_file, None, self.user)
        deadline = started + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"the inference server exited (code {self.process.returncode}) before it was ready: "
                    f"score.py failed to import or in init(). Its log:\n{tail(self.log_path, 30)}"
                )
            if self._health() == 200:
                self.ready_ms = (time.monotonic() - started) * 1000
                return
            time.sleep(READY_POLL_S)
        raise ServerStartError(
            f"the inference server was not ready within {self.start_timeout_s:g} s (init() too slow?). "
            f"Its log:\n{tail(self.log_path, 30)}"
        )

    def _hand_over_package(self, user: ChildUser) -> Path:
        """A copy of the package that ``user`` owns, after checking it can reach the interpreter and scripts."""
        try:
            require_reachable(self.python.resolve().parent, user, "the model environment's Python")
            require_reachable(CHILD_SCRIPTS, user, "deployflow's scripts for model environments")
        except IsolationError as e:
            raise ServerStartError(str(e)) from e
        copy = Path(self._logdir.name) / "package"
        shutil.copytree(self.package_dir, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        let_through(Path(self._logdir.name), user)
        hand_over(copy, user)
        return copy

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if process.poll() is None:
                process.wait()
        self._logdir.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def _request(self, method: str, path: str, body: bytes | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _health(self) -> int | None:
        try:
            return self._request("GET", "/", timeout=1.0)[0]
        except OSError:
            return None

    def send(self, body: bytes) -> Answer:
        """POST the body to /score and say what came back (a timeout is an answer too)."""
        started = time.perf_counter()
        try:
            status, raw = self._request("POST", "/score", body, timeout=self.request_timeout_s)
        except TimeoutError:
            return Answer(0, None, False, (time.perf_counter() - started) * 1000, timed_out=True)
        except OSError as e:
            return Answer(0, f"connection failed: {e}", False, (time.perf_counter() - started) * 1000)
        ms = (time.perf_counter() - started) * 1000
        text = raw.decode("utf-8", errors="replace")
        try:
            return Answer(status, json.loads(text), True, ms)
        except ValueError:
            return Answer(status, text, False, ms)

    def swagger(self) -> dict[str, Any] | None:
        """The server's generated swagger, when score.py declares its schema (inference-schema)."""
        try:
            status, raw = self._request("GET", "/swagger.json", timeout=self.request_timeout_s)
            document = json.loads(raw) if status == 200 else None
        except (OSError, ValueError):
            return None
        return document if isinstance(document, dict) else None


def schema_of(swagger: dict[str, Any] | None) -> dict[str, Any] | None:
    """The input and output schemas score.py declared, or None for a plain ``run(raw_data)``."""
    definitions = (swagger or {}).get("definitions") or {}
    service_input, service_output = definitions.get("ServiceInput"), definitions.get("ServiceOutput")
    if not any(_declared(d) for d in (service_input, service_output)):
        return None  # a plain run(raw_data): the server writes an empty object schema
    return {"input": service_input, "output": service_output}


def schema_examples(schema: dict[str, Any] | None) -> list[Sample]:
    """The declared input example as an extra request (any JSON 2xx answer will do)."""
    example = ((schema or {}).get("input") or {}).get("example")
    if example is None:
        return []
    return [Sample("swagger-example", json.dumps(example).encode())]


def _declared(definition: dict[str, Any] | None) -> bool:
    if not definition:
        return False
    return bool(set(definition) - {"type", "example"}) or definition.get("example") not in (None, {})
