"""Errors the control plane turns into HTTP answers; each message says what to fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class RuntimeApiError(Exception):
    status_code = 400
    code = "BadRequest"


class NotFound(RuntimeApiError):
    status_code = 404
    code = "NotFound"


class Conflict(RuntimeApiError):
    status_code = 409
    code = "Conflict"


class Invalid(RuntimeApiError):
    status_code = 422
    code = "InvalidRequest"


class Unauthorized(RuntimeApiError):
    status_code = 401
    code = "Unauthorized"


class PayloadTooLarge(RuntimeApiError):
    status_code = 413
    code = "PayloadTooLarge"


def invalid_fields(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's or FastAPI's validation errors as one line naming each wrong field and why.

    Only the place and the reason are kept, never the value sent: a body may hold a secret.
    """
    problems = []
    for error in errors:
        if error.get("type") == "json_invalid":  # FastAPI's: loc is ("body", <character offset>)
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            problems.append(f"body is not valid JSON: {reason} at character {error['loc'][-1]}")
            continue
        where = ".".join(str(part) for part in error.get("loc", ())) or "body"
        problems.append(f"{where}: {error.get('msg', 'is not valid')}")
    return "; ".join(problems) or "the request is not valid"
