"""What every deployflow operator shares: the connection id and the hook created from it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from deployflow.hooks.ml_platform import DEFAULT_CONN_ID, MLPlatformHook
from deployflow.platform.base import MLPlatform


class MLPlatformOperator(BaseOperator):
    """Base for operators that talk to Azure ML or the local runtime through one connection."""

    template_fields: Sequence[str] = ("ml_platform_conn_id",)

    def __init__(self, *, ml_platform_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ml_platform_conn_id = ml_platform_conn_id

    @cached_property
    def hook(self) -> MLPlatformHook:
        return MLPlatformHook(ml_platform_conn_id=self.ml_platform_conn_id)

    @property
    def platform(self) -> MLPlatform:
        return self.hook.platform
