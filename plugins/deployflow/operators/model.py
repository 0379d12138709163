"""Operators for model packages: validate one, register it; or take a model the platform already has."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.checks import parse_severities
from deployflow.operators.base import MLPlatformOperator, refused_requests_fail_the_task, rendered_json
from deployflow.packages import ModelPackageError
from deployflow.platform.errors import PlatformNotFoundError
from deployflow.platform.specs import ModelRef
from deployflow.validation import default_model_cache, validate_package


def parse_model(text: str) -> tuple[str, str | None]:
    """``name:version`` -> (name, version); ``name`` or ``name:latest`` -> (name, None): the latest."""
    name, _, version = text.strip().partition(":")
    if not name:
        raise ValueError(f"a registered model is written name:version or name (the latest), got {text!r}")
    return name, None if version in ("", "latest") else version


class ValidateModelPackageOperator(MLPlatformOperator):
    """Fail fast, before any endpoint is touched, when a model package is incomplete or broken.

    Starts Azure ML's inference server on the package in the model's own environment,
    replays every sample, the declared schema's example and a malformed request, and records
    each named check (``smoke_checks``: check name -> fail | warn | off, over the defaults in
    :mod:`deployflow.checks`). Warnings go to the task log and the returned report. A broken
    package fails the task without retries: retrying cannot mend it.

    With ``model`` (``name:version``, or ``name`` for the latest), the platform's registered
    version is what gets deployed: it is resolved here once, and its files (fetched from the
    platform, unless ``package_path`` gives the code and samples beside it) are validated. The
    report's ``package`` and ``model`` are what the later tasks use.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "package_path",
        "model",
        "env_cache",
        "smoke_checks",
    )
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        package_path: str | None = None,
        model: str | None = None,
        env_cache: str | None = None,
        timeout_s: float = 600,
        rel_tol: float | None = None,
        abs_tol: float | None = None,
        smoke_checks: dict[str, str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.package_path = package_path
        self.model = model
        self.env_cache = env_cache
        self.timeout_s = timeout_s
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.smoke_checks = smoke_checks

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            severities = parse_severities(rendered_json(self.smoke_checks, {}))
        except ValueError as e:
            raise AirflowFailException(str(e)) from e
        model, package_path = self._registered_model()
        if not package_path:
            raise AirflowFailException("give package_path (a model package folder) or model (a registered model)")
        try:
            report = validate_package(
                package_path,
                env_cache=Path(self.env_cache) if self.env_cache else None,
                timeout_s=self.timeout_s,
                rel_tol=self.rel_tol,
                abs_tol=self.abs_tol,
                severities=severities,
            )
        except ModelPackageError as e:
            hint = (
                f"\nThe registered model {model} holds no package deployflow can serve: give package_path "
                "(score.py, requirements.txt, samples) beside it"
                if model and not self.package_path
                else ""
            )
            raise AirflowFailException(f"{e}{hint}") from e
        for warning in report.warnings:
            self.log.warning("%s", warning)
        self.log.info(
            "model package %s is valid on the inference server: ready in %.0f ms, %d sample(s), first in %.1f ms, "
            "%d warning(s)",
            report.package,
            report.init_ms,
            report.samples,
            report.run_ms,
            len(report.warnings),
        )
        if report.schema:
            self.log.info("score.py declares its schema: %s", json.dumps(report.schema)[:2000])
        return {**report.to_dict(), "model": str(model) if model else None}

    def _registered_model(self) -> tuple[ModelRef | None, str | None]:
        """The registered version named by ``model`` and the folder to validate for it."""
        if not self.model:
            return None, self.package_path or None
        try:
            name, version = parse_model(self.model)
            with refused_requests_fail_the_task():
                model = self.platform.get_model(name, version)
        except (ValueError, PlatformNotFoundError) as e:
            raise AirflowFailException(f"model {self.model!r}: {e}") from e
        if self.package_path:
            self.log.info("deploying registered model %s with the code and samples of %s", model, self.package_path)
            return model, self.package_path
        folder = self.platform.model_package(model, default_model_cache() / self.platform.kind)
        self.log.info("deploying registered model %s; its files are in %s", model, folder)
        return model, str(folder)


class RegisterModelOperator(MLPlatformOperator):
    """Register a package's model; returns ``name:version`` (the same content twice is one version locally).

    Given ``registered`` (a ``name:version`` the platform already has, as validate resolved it),
    nothing is registered: the task says so and returns that version.
    """

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "package_path",
        "model_name",
        "version",
        "description",
        "registered",
    )

    def __init__(
        self,
        *,
        package_path: str,
        model_name: str,
        version: str | None = None,
        description: str = "",
        registered: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.package_path = package_path
        self.model_name = model_name
        self.version = version
        self.description = description
        self.registered = registered

    def execute(self, context: Context) -> str:
        if self.registered:
            self.log.info("registration skipped: deploying the registered model %s as it is", self.registered)
            return str(self.registered)
        with refused_requests_fail_the_task():  # e.g. the version exists with other content: a retry cannot help
            model = self.platform.register_model(
                self.model_name, self.package_path, version=self.version or None, description=self.description
            )
        self.log.info("registered model %s from %s on %s", model, self.package_path, self.platform.kind)
        return str(model)
