"""What every deployflow operator shares: the connection id and the hook created from it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from deployflow.hooks.ml_platform import DEFAULT_CONN_ID, MLPlatformHook
from deployflow.platform.base import MLPlatform
from deployflow.platform.errors import PlatformError


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


def rendered_json(value: Any, default: Any = None) -> Any:
    """A templated object field: the object itself (native rendering), or its JSON text; empty gives ``default``."""
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value


def is_refusal(error: PlatformError) -> bool:
    """The platform said no (a 4xx other than timeout and throttling): asking again gets the same answer."""
    return error.status_code is not None and 400 <= error.status_code < 500 and error.status_code not in (408, 429)


@contextmanager
def refused_requests_fail_the_task() -> Iterator[None]:
    """A spec the platform refuses (4xx, or invalid before sending) fails the task without retries."""
    try:
        yield
    except ValueError as e:
        raise AirflowFailException(str(e)) from e
    except PlatformError as e:
        if is_refusal(e):
            raise AirflowFailException(str(e)) from e
        raise
