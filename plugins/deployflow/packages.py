"""Model packages: the folder a user hands to deployflow, checked before anything is deployed.

A package holds the scoring script in Azure ML's contract, the model's environment and a
sample request with its expected response, which the smoke tests replay:

    score.py               init() and run(raw_data)
    requirements.txt       the model's environment (must include azureml-inference-server-http)
    model/                 the artefacts score.py loads from AZUREML_MODEL_DIR/model
    sample-request.json    a request body
    sample-response.json   the response the sample request must produce
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORING_SCRIPT = "score.py"
REQUIREMENTS = "requirements.txt"
MODEL_DIR = "model"
SAMPLE_REQUEST = "sample-request.json"
SAMPLE_RESPONSE = "sample-response.json"
INFERENCE_SERVER = "azureml-inference-server-http"
IGNORED = {"__pycache__", ".ipynb_checkpoints"}


class ModelPackageError(ValueError):
    """The package is incomplete or broken; the message names the part to fix."""


@dataclass(frozen=True)
class ModelPackage:
    """A checked model package folder."""

    path: Path

    @classmethod
    def load(cls, path: str | Path) -> ModelPackage:
        root = Path(path)
        if not root.is_dir():
            raise ModelPackageError(f"model package {root} is not a folder")
        for name in (SCORING_SCRIPT, REQUIREMENTS, SAMPLE_REQUEST, SAMPLE_RESPONSE):
            if not (root / name).is_file():
                raise ModelPackageError(f"model package {root} has no {name}")
        if not (root / MODEL_DIR).is_dir() or not any((root / MODEL_DIR).iterdir()):
            raise ModelPackageError(f"model package {root} has no {MODEL_DIR}/ folder with the model's files")
        requirements = (root / REQUIREMENTS).read_text()
        if INFERENCE_SERVER not in requirements:
            raise ModelPackageError(
                f"model package {root}: {REQUIREMENTS} must list {INFERENCE_SERVER}, the server that runs score.py"
            )
        package = cls(root)
        package.sample_request()
        package.sample_response()
        return package

    @property
    def requirements_file(self) -> Path:
        return self.path / REQUIREMENTS

    @property
    def scoring_script(self) -> Path:
        return self.path / SCORING_SCRIPT

    def _json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except ValueError as e:
            raise ModelPackageError(f"model package {self.path}: {name} is not valid JSON ({e})") from e

    def sample_request(self) -> Any:
        return self._json(SAMPLE_REQUEST)

    def sample_request_body(self) -> bytes:
        """The sample request as sent on the wire: the file's own bytes (load() checked it is JSON)."""
        return (self.path / SAMPLE_REQUEST).read_bytes()

    def sample_response(self) -> Any:
        return self._json(SAMPLE_RESPONSE)

    def files(self) -> list[Path]:
        """Every file of the package, in a stable order, skipping caches."""
        return sorted(
            p for p in self.path.rglob("*") if p.is_file() and not IGNORED.intersection(p.relative_to(self.path).parts)
        )

    def content_hash(self) -> str:
        """A digest of every file's path and bytes: two packages with the same hash are the same model."""
        digest = hashlib.sha256()
        for file in self.files():
            digest.update(str(file.relative_to(self.path)).encode() + b"\0")
            digest.update(file.read_bytes())
        return digest.hexdigest()
