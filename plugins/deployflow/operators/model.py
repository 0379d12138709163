"""Operators for model packages: validate one, register it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from deployflow.operators.base import MLPlatformOperator, refused_requests_fail_the_task
from deployflow.packages import ModelPackageError
from deployflow.smoke import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from deployflow.validation import validate_package


class ValidateModelPackageOperator(BaseOperator):
    """Fail fast, before any endpoint is touched, when a model package is incomplete or broken.

    Runs ``init()`` and ``run()`` on the package's sample request in a subprocess of the
    model's own environment and compares the answer with the sample response. A broken
    package fails the task without retries: retrying cannot mend it.
    """

    template_fields: Sequence[str] = ("package_path", "env_cache")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        package_path: str,
        env_cache: str | None = None,
        timeout_s: float = 600,
        rel_tol: float = DEFAULT_REL_TOL,
        abs_tol: float = DEFAULT_ABS_TOL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.package_path = package_path
        self.env_cache = env_cache
        self.timeout_s = timeout_s
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            report = validate_package(
                self.package_path,
                env_cache=Path(self.env_cache) if self.env_cache else None,
                timeout_s=self.timeout_s,
                rel_tol=self.rel_tol,
                abs_tol=self.abs_tol,
            )
        except ModelPackageError as e:
            raise AirflowFailException(str(e)) from e
        self.log.info(
            "model package %s is valid: init() %.0f ms, run() on the sample %.1f ms",
            report.package,
            report.init_ms,
            report.run_ms,
        )
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
