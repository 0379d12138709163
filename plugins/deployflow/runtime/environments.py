"""Model environments: one venv per distinct requirements file, built once and reused.

Azure ML builds an image per environment and caches it by content; the local runtime does
the same with virtual environments keyed by a hash of the requirements and the Python
version, so a second deployment of the same model starts in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from deployflow.runtime.isolation import ChildUser, build_environment, let_through, share

log = logging.getLogger(__name__)

READY_MARKER = ".deployflow-ready"
SHARED_MARKER = ".deployflow-shared-{gid}"
BUILD_TIMEOUT_S = 900


class EnvironmentBuildError(RuntimeError):
    """The model's requirements could not be installed; the message carries pip's last lines."""


def environment_key(requirements: str, python: str = sys.executable) -> str:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = sorted(line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#"))
    digest = hashlib.sha256("\n".join([version, python, *lines]).encode()).hexdigest()
    return digest[:16]


def find_uv() -> str | None:
    """uv, when there is one (``DEPLOYFLOW_UV``, set by ``./dev``, or on PATH): it builds a model
    environment several times faster than venv + pip, from the same requirements. None when
    ``DEPLOYFLOW_INSTALLER=pip`` asks for pip (uv reads its own ``UV_*`` settings, not pip's
    ``PIP_*`` variables or pip.conf, so a machine configured for pip alone builds with pip)."""
    if os.environ.get("DEPLOYFLOW_INSTALLER", "").strip().lower() == "pip":
        return None
    configured = os.environ.get("DEPLOYFLOW_UV", "")
    if configured and Path(configured).is_file():
        return configured
    return shutil.which("uv")


class EnvironmentCache:
    """Builds and finds model venvs under ``cache_dir``; safe across processes (file lock).

    A build (pip or uv, and any requirement's own build step) runs with ``build_environment()``, not
    the caller's: no secret of the runtime or of Airflow reaches it. With a ``user``, each venv is
    shared with that user's group (read-only), as the processes that run in it are that user.
    """

    def __init__(
        self, cache_dir: Path, *, base_python: str = sys.executable, uv: str | None = None,
        user: ChildUser | None = None,
    ) -> None:  # fmt: skip
        self.cache_dir = cache_dir
        self.base_python = base_python
        self.uv = uv if uv is not None else find_uv()
        self.user = user

    def ensure(self, requirements_file: Path) -> Path:
        """Return the Python interpreter of the venv for this requirements file, building it if needed."""
        return self.ensure_requirements(requirements_file.read_text(), source=requirements_file)

    def ensure_requirements(self, requirements: str, *, source: Path | None = None) -> Path:
        """Return the Python interpreter of the venv for these requirements, building it if needed;
        built from ``source`` when they are that file's (so a failure names it), else from a copy."""
        key = environment_key(requirements, self.base_python)
        env_dir = self.cache_dir / key
        python = env_dir / "bin" / "python"
        if (env_dir / READY_MARKER).exists() and self._shared(env_dir):
            return python
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cache_dir / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (env_dir / READY_MARKER).exists():
                requirements_file = source
                if requirements_file is None:
                    requirements_file = self.cache_dir / f"{key}.requirements.txt"
                    requirements_file.write_text(requirements)
                self._build(env_dir, requirements_file)
            if not self._shared(env_dir):
                assert self.user is not None
                share(env_dir, self.user)
                let_through(self.cache_dir, self.user)
                (env_dir / SHARED_MARKER.format(gid=self.user.gid)).touch()
        return python

    def _shared(self, env_dir: Path) -> bool:
        return self.user is None or (env_dir / SHARED_MARKER.format(gid=self.user.gid)).exists()

    def _steps(self, env_dir: Path, requirements_file: Path) -> list[list[str]]:
        python = str(env_dir / "bin" / "python")
        if self.uv:
            return [
                [self.uv, "venv", "--quiet", "--python", self.base_python, str(env_dir)],
                [self.uv, "pip", "install", "--python", python, "-r", str(requirements_file)],
            ]
        return [
            [self.base_python, "-m", "venv", str(env_dir)],
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-r", str(requirements_file)],
        ]

    def _build(self, env_dir: Path, requirements_file: Path) -> None:
        log.info("building model environment %s from %s", env_dir.name, requirements_file)
        shutil.rmtree(env_dir, ignore_errors=True)
        build_log = self.cache_dir / f"{env_dir.name}.build.log"
        steps = self._steps(env_dir, requirements_file)
        environment = build_environment()
        with open(os.open(build_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            for step in steps:
                try:
                    result = subprocess.run(
                        step, stdout=out, stderr=subprocess.STDOUT, env=environment, timeout=BUILD_TIMEOUT_S
                    )  # fmt: skip
                except subprocess.TimeoutExpired as e:
                    shutil.rmtree(env_dir, ignore_errors=True)
                    raise EnvironmentBuildError(f"building the model environment took over {BUILD_TIMEOUT_S}s") from e
                if result.returncode != 0:
                    shutil.rmtree(env_dir, ignore_errors=True)
                    tail = "\n".join(build_log.read_text().splitlines()[-15:])
                    raise EnvironmentBuildError(
                        f"installing {requirements_file} failed (exit {result.returncode}); "
                        f"fix the requirements. Last lines of {build_log}:\n{tail}"
                    )
        (env_dir / READY_MARKER).write_text(requirements_file.read_text())
        log.info("model environment %s ready", env_dir.name)
