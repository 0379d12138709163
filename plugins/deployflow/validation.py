"""Validate a model package before it goes near an endpoint.

Checks the package is complete, builds (or reuses) the model's own environment, starts
Azure ML's inference server on it on a loopback port — the server that will run it on the
endpoint, so ``score.py`` is called exactly as it will be there — replays every sample,
the declared schema's example and a malformed request, and records each named check's
outcome. A ``fail`` outcome raises, naming the sample and where the answer differs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployflow.checks import Severity, run_checks
from deployflow.inference_server import InferenceServer, ServerStartError, schema_examples, schema_of
from deployflow.packages import ModelPackage, ModelPackageError
from deployflow.runtime.environments import EnvironmentBuildError, EnvironmentCache, environment_key
from deployflow.runtime.isolation import IsolationError, child_user, model_python

ENV_CACHE_VARIABLE = "DEPLOYFLOW_ENV_CACHE"
MODEL_CACHE_VARIABLE = "DEPLOYFLOW_MODEL_CACHE"


def default_env_cache() -> Path:
    """Where model environments are built: $DEPLOYFLOW_ENV_CACHE, else ~/.cache/deployflow/envs."""
    configured = os.environ.get(ENV_CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "deployflow" / "envs"


def default_model_cache() -> Path:
    """Where registered models are downloaded to validate: $DEPLOYFLOW_MODEL_CACHE, else ~/.cache/deployflow/models."""
    configured = os.environ.get(MODEL_CACHE_VARIABLE)
    return Path(configured) if configured else Path.home() / ".cache" / "deployflow" / "models"


@dataclass(frozen=True)
class ValidationReport:
    package: str
    content_hash: str
    environment: str
    init_ms: float
    run_ms: float
    samples: int
    kind: str = "score"
    checks: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def validate_package(
    path: str | Path,
    *,
    env_cache: Path | None = None,
    timeout_s: float = 300,
    request_timeout_s: float = 60,
    rel_tol: float | None = None,
    abs_tol: float | None = None,
    severities: Mapping[str, Severity] | None = None,
) -> ValidationReport:
    """Raise ModelPackageError saying what is wrong, or return what was checked (warnings included)."""
    package = ModelPackage.load(path)
    package_rel, package_abs = package.tolerance()
    try:
        user = child_user()
        cache = EnvironmentCache(env_cache or default_env_cache(), base_python=model_python(user), user=user)
        python = cache.ensure_requirements(package.serving_requirements())
    except EnvironmentBuildError as e:
        raise ModelPackageError(f"model package {package.path}: requirements.txt does not install: {e}") from e
    except IsolationError as e:
        raise ModelPackageError(f"model package {package.path} cannot be run in isolation: {e}") from e
    samples = package.samples()
    try:
        with InferenceServer(
            python, package.path, start_timeout_s=timeout_s, request_timeout_s=request_timeout_s, user=user
        ) as server:
            schema = schema_of(server.swagger())
            report = run_checks(
                server.send,
                samples,
                severities=severities,
                rel_tol=package_rel if rel_tol is None else rel_tol,
                abs_tol=package_abs if abs_tol is None else abs_tol,
                examples=schema_examples(schema),
                timeout_s=request_timeout_s,
            )
            server_log = server.log_tail() if report.failures else ""
    except ServerStartError as e:
        raise ModelPackageError(f"model package {package.path}: {e}") from e
    if report.failures:
        listed = "\n  ".join(report.lines(report.failures))
        raise ModelPackageError(
            f"model package {package.path}: {len(report.failures)} check(s) failed on the inference server:"
            f"\n  {listed}\nThe server's last log lines:\n{server_log}"
        )
    return ValidationReport(
        package=str(package.path),
        content_hash=package.content_hash(),
        environment=environment_key(package.serving_requirements(), str(python)),
        init_ms=round(server.ready_ms, 2),
        run_ms=round((report.answer_ms() or [0.0])[0], 2),
        samples=len(samples),
        kind=package.kind,
        checks=report.to_dict(),
        warnings=report.lines(report.warnings),
        schema=schema,
    )
