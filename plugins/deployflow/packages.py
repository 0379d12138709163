"""Model packages: the folder a user hands to deployflow, checked before anything is deployed.

A package is one of two kinds. A **scoring-script package** holds the scoring script in
Azure ML's contract, the model's environment and sample requests with their expected
responses, which validation and the smoke tests replay:

    score.py                   init() and run(raw_data), or run(...) decorated with inference-schema
    requirements.txt           the model's environment (must include azureml-inference-server-http)
    model/                     the artefacts score.py loads from AZUREML_MODEL_DIR/model
    sample-request.json        a request body                            } one pair, or
    sample-response.json       the response it must produce             } samples/, or both
    samples/NAME.request.json  more requests, each with NAME.response.json beside it
    tolerance.json             optional: {"relative": 1e-6, "absolute": 1e-9} for comparing numbers

An **MLflow model** is the folder ``mlflow.<flavor>.save_model`` writes (``MLmodel``, the
model's files, ``requirements.txt``) with no ``score.py``: deployed as Azure ML's no-code
MLflow deployment does it, by a scoring script of the platform's (on the local runtime,
``runtime/child/mlflow_score.py``) in an environment built from the model's own requirements.
Its samples are the files above when present, else a request made from the ``input_example``
MLflow saved beside the model (answered by any JSON 2xx, as nothing recorded the answer).
"""

from __future__ import annotations

import hashlib
import json
import re
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
MLMODEL = "MLmodel"
MLFLOW_INPUT_EXAMPLE = "input_example.json"
MLFLOW_SCORING_SCRIPT = Path(__file__).resolve().parent / "runtime" / "child" / "mlflow_score.py"
#: the batch script (init(), run(mini_batch)) a batch job of an MLflow model runs when it names none
MLFLOW_BATCH_SCRIPT = MLFLOW_SCORING_SCRIPT.with_name("mlflow_batch.py")
# What the platform adds to an MLflow model's own requirements to serve it: the inference server
# (the version the sample model pins) and pandas, which pyfunc needs for tabular input; MLflow's
# pin becomes mlflow-skinny's (the same pyfunc, without the tracking server and UI), as Azure ML's
# MLflow images do.
MLFLOW_SERVING_REQUIREMENTS = ("azureml-inference-server-http==1.5.1", "pandas")
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
        package = cls(root)
        if package.is_mlflow:
            return package._load_mlflow()
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
        if not package.samples():
            raise ModelPackageError(
                f"model package {root} has no sample: add {SAMPLE_REQUEST} and {SAMPLE_RESPONSE}, "
                f"or {SAMPLES_DIR}/NAME{REQUEST_SUFFIX} with NAME{RESPONSE_SUFFIX}"
            )
        package.tolerance()
        return package

    def _load_mlflow(self) -> ModelPackage:
        if not self.requirements_file.is_file():
            raise ModelPackageError(
                f"MLflow model {self.path} has no {REQUIREMENTS}: save it with mlflow 1.20 or later "
                f"(which writes one beside {MLMODEL}), or write the model's pip requirements there"
            )
        if not self.samples():
            raise ModelPackageError(
                f"MLflow model {self.path} has no sample: save it with input_example=..., or add "
                f"{SAMPLE_REQUEST} and {SAMPLE_RESPONSE} (or {SAMPLES_DIR}/) beside {MLMODEL}"
            )
        self.tolerance()
        return self

    @property
    def is_mlflow(self) -> bool:
        """An MLflow model folder (MLmodel, no score.py): served by the platform's MLflow scoring script."""
        return (self.path / MLMODEL).is_file() and not (self.path / SCORING_SCRIPT).is_file()

    @property
    def kind(self) -> str:
        return "mlflow" if self.is_mlflow else "score"

    @property
    def requirements_file(self) -> Path:
        return self.path / REQUIREMENTS

    @property
    def scoring_script(self) -> Path:
        """The script the inference server runs: the package's score.py, or the MLflow one."""
        return MLFLOW_SCORING_SCRIPT if self.is_mlflow else self.path / SCORING_SCRIPT

    def batch_script(self, name: str | None) -> Path:
        """The script a batch job runs: the package's ``name``, or, when no name is given, the platform's
        MLflow batch script for an MLflow model. Anything else is an error that says what to set."""
        if name:
            script = self.path / name
            if not script.is_file():
                raise ModelPackageError(f"model package {self.path} has no {name}, the batch scoring script named")
            return script
        if self.is_mlflow:
            return MLFLOW_BATCH_SCRIPT
        raise ModelPackageError(
            f"model package {self.path} names no batch scoring script and is not an MLflow model "
            f"({MLMODEL} and no {SCORING_SCRIPT}): set scoring_script to its init()/run(mini_batch) script"
        )

    def serving_requirements(self) -> str:
        """The requirements of the environment that serves the model."""
        own = self.requirements_file.read_text()
        if not self.is_mlflow:
            return own
        lines = [_skinny(line.strip()) for line in own.splitlines() if line.strip() and not line.startswith("#")]
        names = {_requirement_name(line) for line in lines}
        lines += [extra for extra in MLFLOW_SERVING_REQUIREMENTS if _requirement_name(extra) not in names]
        return "\n".join(lines) + "\n"

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
        if not samples and self.is_mlflow and (self.path / MLFLOW_INPUT_EXAMPLE).is_file():
            samples.append(Sample("input-example", json.dumps(self._input_example_request()).encode()))
        return samples

    def _input_example_request(self) -> dict[str, Any]:
        """The request Azure ML's MLflow serving takes for the saved input example: a data frame in
        split orientation (columns, index, data) under ``input_data``, or the tensor as it is."""
        example = self._json(MLFLOW_INPUT_EXAMPLE)
        if isinstance(example, dict) and "data" in example:
            return {"input_data": {k: example[k] for k in ("columns", "index", "data") if k in example}}
        if isinstance(example, dict) and "inputs" in example:
            return {"input_data": example["inputs"]}
        return {"input_data": example}

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
        """A digest of every file's path and bytes, each framed by its length, so no two packages that
        differ (a file's end moved into the next one's name) hash the same: same hash, same model."""
        digest = hashlib.sha256()
        for file in self.files():
            for part in (str(file.relative_to(self.path)).encode(), file.read_bytes()):
                digest.update(len(part).to_bytes(8, "big"))
                digest.update(part)
        return digest.hexdigest()


def _requirement_name(line: str) -> str:
    """The distribution name a requirement line names, normalised (``Scikit_Learn>=1`` -> scikit-learn)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else line


def _skinny(line: str) -> str:
    """``mlflow==X`` -> ``mlflow-skinny==X``: the pyfunc runtime without MLflow's server and UI."""
    if _requirement_name(line) != "mlflow":
        return line
    return "mlflow-skinny" + line.lstrip()[len("mlflow") :]
