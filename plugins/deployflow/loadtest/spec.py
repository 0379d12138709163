"""What each request of a load test looks like; its wire bytes are built once per run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from deployflow.loadtest.guard import require_loopback

USER_AGENT = "deployflow-loadtest"
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RequestSpec:
    """One request, sent unchanged for the whole test (a scoring call, typically).

    `timeout_s` counts from the request's intended send time: a request still waiting
    for a connection, or for its response, that long after it was due is a timeout.
    Only loopback hosts are accepted unless `allow_remote` says the caller means it.
    """

    url: str
    method: str = "POST"
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    allow_remote: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"load test URL must be http:// or https://, got {self.url!r}")
        if not parts.hostname:
            raise ValueError(f"load test URL has no host: {self.url!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"load test URL has a malformed port: {self.url!r}") from exc
        if port == 0:
            raise ValueError(f"load test URL has port 0: {self.url!r}")
        if not self.allow_remote:
            require_loopback(parts.hostname, self.url)
        if not self.method.isalpha():
            raise ValueError(f"HTTP method must be a plain token, got {self.method!r}")
        if self.method.upper() == "HEAD":
            # A HEAD response announces a body it does not send; the parser cannot know.
            raise ValueError("HEAD requests are not supported by the load generator")
        for name, value in self.headers.items():
            if not name or any(c in name for c in ":\r\n ") or any(c in value for c in "\r\n"):
                raise ValueError(f"invalid header {name!r}")
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got {self.timeout_s!r}")

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "https"

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (443 if self.tls else 80)

    def wire_bytes(self) -> bytes:
        """The complete HTTP/1.1 request; keep-alive is HTTP/1.1's default, so not stated."""
        parts = urlsplit(self.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        given = {name.lower() for name in self.headers}
        lines = [f"{self.method.upper()} {target} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {parts.netloc.rpartition('@')[2]}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        if "content-length" not in given and (self.body or self.method.upper() in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(self.body)}")
        lines.extend(f"{name}: {value}" for name, value in self.headers.items())
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("latin-1") + self.body
