"""Model packages: the folder a user hands to deployflow, checked before anything is deployed.

A package holds the scoring script in Azure ML's contract, the model's environment and
sample requests with their expected responses, which validation and the smoke tests replay:

    score.py                   init() and run(raw_data), or run(...) decorated with inference-schema
    requirements.txt           the model's environment (must include azureml-inference-server-http)
    model/                     the artefacts score.py loads from AZUREML_MODEL_DIR/model
    sample-request.json        a request body                            } one pair, or
    sample-response.json       the response it must produce             } samples/, or both
    samples/NAME.request.json  more requests, each with NAME.response.json beside it
    tolerance.json             optional: {"relative": 1e-6, "absolute": 1e-9} for comparing numbers
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployflow.checks import Sample
from deployflow.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL

SCORING_SCRIPT = "score.py"
REQUIREMENTS = "requirements.txt"
MODEL_DIR = "model"
SAMPLE_REQUEST = "sample-request.json"
SAMPLE_RESPONSE = "sample-response.json"
SAMPLES_DIR = "samples"
REQUEST_SUFFIX = ".request.json"
RESPONSE_SUFFIX = ".response.json"
TOLERANCE_FILE = "tolerance.json"
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
        for name in (SCORING_SCRIPT, REQUIREMENTS):
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
        if not package.samples():
            raise ModelPackageError(
                f"model package {root} has no sample: add {SAMPLE_REQUEST} and {SAMPLE_RESPONSE}, "
                f"or {SAMPLES_DIR}/NAME{REQUEST_SUFFIX} with NAME{RESPONSE_SUFFIX}"
            )
        package.tolerance()
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

    def samples(self) -> list[Sample]:
        """Every request/response pair: the single pair first (named ``sample``), then samples/ by name."""
        pairs: list[tuple[str, str, str]] = []
        if (self.path / SAMPLE_REQUEST).is_file() or (self.path / SAMPLE_RESPONSE).is_file():
            pairs.append(("sample", SAMPLE_REQUEST, SAMPLE_RESPONSE))
        folder = self.path / SAMPLES_DIR
        if folder.is_dir():
            for request in sorted(folder.glob(f"*{REQUEST_SUFFIX}")):
                name = request.name.removesuffix(REQUEST_SUFFIX)
                pairs.append((name, f"{SAMPLES_DIR}/{request.name}", f"{SAMPLES_DIR}/{name}{RESPONSE_SUFFIX}"))
            for response in sorted(folder.glob(f"*{RESPONSE_SUFFIX}")):
                if not response.with_name(response.name.removesuffix(RESPONSE_SUFFIX) + REQUEST_SUFFIX).is_file():
                    raise ModelPackageError(f"model package {self.path}: {SAMPLES_DIR}/{response.name} has no request")
        samples = []
        for name, request, response in pairs:
            for part in (request, response):
                if not (self.path / part).is_file():
                    raise ModelPackageError(f"model package {self.path}: {part} is missing (a sample needs both)")
            self._json(request)
            samples.append(Sample(name, (self.path / request).read_bytes(), self._json(response)))
        return samples

    def tolerance(self) -> tuple[float, float]:
        """(relative, absolute) tolerance for numbers in answers: the package's own, else the defaults."""
        if not (self.path / TOLERANCE_FILE).is_file():
            return DEFAULT_REL_TOL, DEFAULT_ABS_TOL
        given = self._json(TOLERANCE_FILE)
        if not isinstance(given, dict) or set(given) - {"relative", "absolute"}:
            raise ModelPackageError(
                f"model package {self.path}: {TOLERANCE_FILE} must be an object with 'relative' and/or 'absolute'"
            )
        values = {"relative": DEFAULT_REL_TOL, "absolute": DEFAULT_ABS_TOL, **given}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ModelPackageError(f"model package {self.path}: {TOLERANCE_FILE} {key} must be a number >= 0")
        return float(values["relative"]), float(values["absolute"])

    def sample_request(self) -> Any:
        """The first sample's request, parsed (load() checked it is JSON)."""
        return json.loads(self.samples()[0].body)

    def sample_request_body(self) -> bytes:
        """The first sample's request as sent on the wire: the file's own bytes."""
        return self.samples()[0].body

    def sample_response(self) -> Any:
        return self.samples()[0].expected

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
