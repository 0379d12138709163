"""Shadow-answer comparison: does the new deployment answer what the current one answers?

During a mirror step the new model must not only stay up, it must agree with the model users
rely on. The same recorded requests (the package's samples, plus a request file the plan
names) are sent to both deployments, pinned by the ``azureml-model-deployment`` header — the
way that works on Azure ML, which drops mirrored answers, and on the local runtime alike —
and the answers are compared: numbers within a tolerance, labels and JSON structure equal.
The gate's ``min_agreement`` fails the step below it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployflow.compare import compare_responses
from deployflow.platform.base import MLPlatform
from deployflow.platform.errors import PlatformError

MAX_DISAGREEMENTS_KEPT = 10


@dataclass
class Agreement:
    """How many compared requests got the same answer from both deployments, and a few that did not."""

    compared: int = 0
    agreed: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    source: str = "recorded requests"

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def to_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "agreed": self.agreed, "rate": self.rate, "source": self.source,
                "disagreements": self.disagreements}  # fmt: skip


def load_requests(path: str | Path) -> list[bytes]:
    """Recorded request bodies: a JSON list of requests, or JSON Lines (one request per line)."""
    text = Path(path).read_text()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, list):
        return [json.dumps(item).encode() for item in document]
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return [json.dumps(json.loads(line)).encode() for line in lines]
    except ValueError as e:
        raise ValueError(f"{path}: neither a JSON list of requests nor JSON Lines ({e})") from e


def compare_deployments(
    platform: MLPlatform,
    endpoint: str,
    new: str,
    old: str,
    requests: list[bytes],
    *,
    rel_tol: float,
    abs_tol: float,
    timeout_s: float = 30.0,
) -> Agreement:
    """Send each request to ``old`` and to ``new``; count the answers that match.

    A request the current deployment itself does not answer 2xx is no reference and is not
    counted; one the new deployment fails on counts as a disagreement.
    """
    agreement = Agreement()
    for index, body in enumerate(requests):
        try:
            reference = platform.invoke(endpoint, body, deployment=old, timeout_s=timeout_s)
            answer = platform.invoke(endpoint, body, deployment=new, timeout_s=timeout_s)
        except PlatformError as e:
            _keep(agreement, index, f"no answer: {e}")
            agreement.compared += 1
            continue
        if not reference.ok:
            continue
        agreement.compared += 1
        if not answer.ok:
            _keep(agreement, index, f"{new} answered HTTP {answer.status_code} where {old} answered")
            continue
        problems = compare_responses(reference.body, answer.body, rel_tol=rel_tol, abs_tol=abs_tol)
        if problems:
            _keep(agreement, index, "; ".join(problems[:3]))
        else:
            agreement.agreed += 1
    return agreement


def _keep(agreement: Agreement, index: int, detail: str) -> None:
    if len(agreement.disagreements) < MAX_DISAGREEMENTS_KEPT:
        agreement.disagreements.append({"request": index, "detail": detail[:500]})
