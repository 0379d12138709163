"""The one contract every deployment step talks to, whichever backend answers it."""

from deployflow.platform.base import MLPlatform
from deployflow.platform.errors import PlatformError, PlatformNotFoundError
from deployflow.platform.specs import (
    DeploymentSpec,
    DeploymentState,
    EndpointKeys,
    EndpointSpec,
    EndpointState,
    InvokeResult,
    ModelRef,
    ProbeSettings,
    RequestSettings,
    Resources,
)

__all__ = [
    "DeploymentSpec",
    "DeploymentState",
    "EndpointKeys",
    "EndpointSpec",
    "EndpointState",
    "InvokeResult",
    "MLPlatform",
    "ModelRef",
    "PlatformError",
    "PlatformNotFoundError",
    "ProbeSettings",
    "RequestSettings",
    "Resources",
]
