"""Validate a model package before it goes near an endpoint.

Checks the package is complete, builds (or reuses) the model's own environment, runs
``init()`` and ``run()`` on the sample request in a subprocess of that environment, and
compares the answer with the sample response. Each failure names the part to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from deployflow.packages import SAMPLE_REQUEST, ModelPackage, ModelPackageError
from deployflow.runtime.child import CHILD_SCRIPTS
from deployflow.runtime.environments import EnvironmentBuildError, EnvironmentCache, environment_key
from deployflow.smoke import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, compare_responses

PROBE = CHILD_SCRIPTS / "score_probe.py"
ENV_CACHE_VARIABLE = "DEPLOYFLOW_ENV_CACHE"


def default_env_cache() -> Path:
    """Where model environments are built: $DEPLOYFLOW_ENV_CACHE, else ~/.cache/deployflow/envs."""
    configured = os.environ.get(ENV_CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "deployflow" / "envs"


@dataclass(frozen=True)
class ValidationReport:
    package: str
    content_hash: str
    environment: str
    init_ms: float
    run_ms: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def validate_package(
    path: str | Path,
    *,
    env_cache: Path | None = None,
    timeout_s: float = 300,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
) -> ValidationReport:
    """Raise ModelPackageError saying what is wrong, or return what was checked."""
    package = ModelPackage.load(path)
    try:
        python = EnvironmentCache(env_cache or default_env_cache()).ensure(package.requirements_file)
    except EnvironmentBuildError as e:
        raise ModelPackageError(f"model package {package.path}: requirements.txt does not install: {e}") from e
    try:
        completed = subprocess.run(
            [str(python), "-P", str(PROBE), str(package.path.resolve()), str(package.path / SAMPLE_REQUEST)],
            capture_output=True, text=True, timeout=timeout_s, cwd=package.path,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise ModelPackageError(
            f"model package {package.path}: init() and run() on the sample took over {timeout_s:g} s"
        ) from e
    report = _probe_report(package.path, completed)
    if report["stage"] != "done":
        raise ModelPackageError(
            f"model package {package.path}: score.py failed in {report['stage']}():\n{report['error']}"
        )
    if report["status"] != 200:
        raise ModelPackageError(
            f"model package {package.path}: run() answered the sample request with HTTP {report['status']}: "
            f"{report['answer']}"
        )
    problems = compare_responses(package.sample_response(), report["answer"], rel_tol=rel_tol, abs_tol=abs_tol)
    if problems:
        listed = "\n  ".join(problems[:20])
        raise ModelPackageError(
            f"model package {package.path}: run() on sample-request.json does not give sample-response.json:"
            f"\n  {listed}"
        )
    return ValidationReport(
        package=str(package.path),
        content_hash=package.content_hash(),
        environment=environment_key(package.requirements_file.read_text(), str(python)),
        init_ms=round(report["init_ms"], 2),
        run_ms=round(report["run_ms"], 2),
    )


def _probe_report(package: Path, completed: subprocess.CompletedProcess[str]) -> dict:
    lines = completed.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ModelPackageError(
            f"model package {package}: score.py ended the process (exit {completed.returncode}) before "
            f"reporting; its output:\n{(completed.stdout + completed.stderr)[-2000:]}"
        ) from None
