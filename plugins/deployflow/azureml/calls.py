"""How every Azure ML SDK call is made: transient ARM errors retried with bounded, jittered
backoff; everything else turned into a PlatformError that says what failed and what to check.

Service messages are copied into errors with GUIDs masked, because Entra ID errors carry tenant
and object ids; nothing here logs a message body, a key or a token.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling import LROPoller

from deployflow.platform.errors import PlatformError, PlatformNotFoundError

log = logging.getLogger(__name__)

T = TypeVar("T")

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_MESSAGE = 600


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; ``sleep`` and ``random`` are injectable for tests."""

    attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Wait before retry ``attempt`` (1-based): half the exponential step plus up to half
        again at random, and never less than the service's Retry-After (capped)."""
        step = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        wait = step / 2 + self.random() * step / 2
        if retry_after_s:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait


def is_transient(error: BaseException) -> bool:
    """Throttling (429), server errors (5xx) and failures to reach or hear from ARM."""
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return True
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return error.status_code == 429 or error.status_code >= 500
    return False


def call_sdk(action: Callable[[], T], *, what: str, check: str, policy: RetryPolicy) -> T:
    """Run one SDK call (``what`` reads like "create deployment ep/blue"), retrying transient
    errors up to ``policy.attempts`` times; ``check`` says what the user should look at if it fails."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return action()
        except AzureError as e:
            if not is_transient(e) or attempt == policy.attempts:
                raise platform_error(e, what=what, check=check) from e
            wait = policy.delay(attempt, _retry_after(e))
            log.warning(
                "Azure ML could not %s (%s); retry %d of %d in %.1f s",
                what,
                _short(e),
                attempt,
                policy.attempts - 1,
                wait,
            )
            policy.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def wait_for(poller: LROPoller[T], *, what: str, check: str, timeout_s: float) -> T:
    """Wait for a long-running operation; raise if it failed or is still running at the deadline.

    ``LROPoller.result(timeout=...)`` returns quietly when the timeout passes, so ``done()``
    is what tells a finished operation from an abandoned wait.
    """
    try:
        result = poller.result(timeout=timeout_s)
    except AzureError as e:
        raise platform_error(e, what=what, check=check) from e
    if not poller.done():
        raise PlatformError(
            f"Azure ML did not finish to {what} within {timeout_s:g} s (still {poller.status()}); "
            "it may still complete: check the resource in Azure ML studio, or raise the timeout"
        )
    return result


def platform_error(error: AzureError, *, what: str, check: str) -> PlatformError:
    """The PlatformError for an SDK error: what was attempted, why it failed, what to check."""
    status = getattr(error, "status_code", None)
    if isinstance(error, ResourceNotFoundError) or status == 404:
        return PlatformNotFoundError(
            f"Azure ML could not {what}: it does not exist ({_message(error)}); check the name",
            status_code=404,
        )
    if isinstance(error, ClientAuthenticationError) or status == 401:
        # Entra ID messages name tenants and applications: say what to fix, not what it said
        return PlatformError(
            f"Azure ML could not {what}: authentication failed; check the connection's credential "
            "(service principal secret or managed identity) and that it is allowed into this tenant",
            status_code=status,
        )
    if status == 403:
        return PlatformError(
            f"Azure ML could not {what}: permission denied ({_message(error)}); check that the identity "
            "has a role on the workspace that allows it (e.g. AzureML Data Scientist)",
            status_code=403,
        )
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return PlatformError(
            f"Azure ML could not {what}: the service could not be reached ({_short(error)}); "
            "check network access to management.azure.com and the workspace"
        )
    if status is not None and status >= 400:  # a failed operation is told by a status read answered 200
        return PlatformError(
            f"Azure ML could not {what} (HTTP {status}): {_message(error)}; check {check}", status_code=status
        )
    return PlatformError(f"Azure ML could not {what}: {_message(error)}; check {check}")


def _message(error: AzureError) -> str:
    inner = getattr(error, "error", None)
    text = getattr(inner, "message", None) or getattr(error, "message", None) or str(error) or type(error).__name__
    text = _GUID.sub("<id>", " ".join(str(text).split()))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _short(error: AzureError) -> str:
    status = getattr(error, "status_code", None)
    return f"HTTP {status}" if status is not None else type(error).__name__


def _retry_after(error: AzureError) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
