"""Errors the control plane turns into HTTP answers; each message says what to fix."""

from __future__ import annotations


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
