"""Operators for model packages: validate one, register it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.checks import parse_severities
from deployflow.operators.base import MLPlatformOperator, refused_requests_fail_the_task, rendered_json
from deployflow.packages import ModelPackageError
from deployflow.validation import validate_package


class ValidateModelPackageOperator(BaseOperator):
    """Fail fast, before any endpoint is touched, when a model package is incomplete or broken.

    Starts Azure ML's inference server on the package in the model's own environment,
    replays every sample, the declared schema's example and a malformed request, and records
    each named check (``smoke_checks``: check name -> fail | warn | off, over the defaults in
    :mod:`deployflow.checks`). Warnings go to the task log and the returned report. A broken
    package fails the task without retries: retrying cannot mend it.
    """

    template_fields: Sequence[str] = ("package_path", "env_cache", "smoke_checks")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        package_path: str,
        env_cache: str | None = None,
        timeout_s: float = 600,
        rel_tol: float | None = None,
        abs_tol: float | None = None,
        smoke_checks: dict[str, str] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.package_path = package_path
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
        try:
            report = validate_package(
                self.package_path,
                env_cache=Path(self.env_cache) if self.env_cache else None,
                timeout_s=self.timeout_s,
                rel_tol=self.rel_tol,
                abs_tol=self.abs_tol,
                severities=severities,
            )
        except ModelPackageError as e:
            raise AirflowFailException(str(e)) from e
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
        return report.to_dict()


class RegisterModelOperator(MLPlatformOperator):
    """Register a package's model; returns ``name:version`` (the same content twice is one version locally)."""

    template_fields: Sequence[str] = (
        *MLPlatformOperator.template_fields,
        "package_path",
        "model_name",
        "version",
        "description",
    )

    def __init__(
        self,
        *,
        package_path: str,
        model_name: str,
        version: str | None = None,
        description: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.package_path = package_path
        self.model_name = model_name
        self.version = version
        self.description = description

    def execute(self, context: Context) -> str:
        with refused_requests_fail_the_task():  # e.g. the version exists with other content: a retry cannot help
            model = self.platform.register_model(
                self.model_name, self.package_path, version=self.version or None, description=self.description
            )
        self.log.info("registered model %s from %s on %s", model, self.package_path, self.platform.kind)
        return str(model)
