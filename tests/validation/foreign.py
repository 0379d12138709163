"""Model packages written the way Azure ML's documentation and samples write them, not to our rules.

Each builder writes a package into a folder: a scikit-learn iris classifier trained in the
sample model's environment (so the environment is built once and shared), a ``score.py``
in one of the styles users already have, and its samples, computed in-process by the same
model so that the expected answers are the model's own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.runtime.support import SAMPLE_MODEL

TRAIN = """
import json, sys
from pathlib import Path
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
out = Path(sys.argv[1])
X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)
(out / "model").mkdir(exist_ok=True)
joblib.dump(model, out / "model" / "model.pkl")
rows = [X[0].tolist(), X[60].tolist(), X[120].tolist(), X[30].tolist()]
print(json.dumps({"rows": rows, "labels": model.predict(rows).tolist()}))
"""

# Azure ML's samples: json.loads(raw_data) with no error handling, MLflow's split orientation.
PLAIN_SCORE = """
import json
import os

import joblib
import numpy


def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model", "model.pkl"))


def run(raw_data):
    data = json.loads(raw_data)["input_data"]["data"]
    return model.predict(numpy.array(data)).tolist()
"""

# Many of Azure ML's older samples return json.dumps(...): the server encodes that string again.
DUMPS_SCORE = PLAIN_SCORE.replace(
    "return model.predict(numpy.array(data)).tolist()", "return json.dumps(model.predict(numpy.array(data)).tolist())"
)

# inference-schema's decorators: the server parses the body and hands run() a numpy array.
SCHEMA_SCORE = """
import os

import joblib
import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "model.pkl"))


@input_schema("data", NumpyParameterType(np.array([[5.1, 3.5, 1.4, 0.2]])))
@output_schema(NumpyParameterType(np.array([0])))
def run(data):
    return model.predict(data).tolist()
"""

# AMLRequest: the raw request, a 400 of its own for what it cannot read.
RAW_SCORE = """
import json
import os

import joblib
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "model.pkl"))


@rawhttp
def run(request: AMLRequest):
    if request.method != "POST":
        return AMLResponse("POST only", 405)
    try:
        rows = json.loads(request.get_data(as_text=True))["input_data"]["data"]
    except (ValueError, KeyError, TypeError) as e:
        return AMLResponse(json.dumps({"error": str(e)}), 400)
    return AMLResponse(json.dumps(model.predict(rows).tolist()), 200, {"Content-Type": "application/json"})
"""

BROKEN_INIT_SCORE = """
def init():
    raise RuntimeError("model.pkl was trained with another scikit-learn")


def run(raw_data):
    return []
"""


def train_iris(python: Path, package: Path) -> dict:
    """Train the classifier into ``package/model``; its sample rows and the labels it gives them."""
    package.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([str(python), "-c", TRAIN, str(package)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def write_package(python: Path, package: Path, score: str, *, body: str = "mlflow") -> dict:
    """A complete package with ``score``; ``body`` is the request shape: ``mlflow`` or ``schema``."""
    trained = train_iris(python, package)
    (package / "score.py").write_text(score)
    (package / "requirements.txt").write_text((SAMPLE_MODEL / "requirements.txt").read_text())
    rows = trained["rows"][:2]
    request = (
        {"data": rows}
        if body == "schema"
        else {"input_data": {"columns": ["sl", "sw", "pl", "pw"], "index": [0, 1], "data": rows}}
    )
    (package / "sample-request.json").write_text(json.dumps(request))
    (package / "sample-response.json").write_text(json.dumps(trained["labels"][:2]))
    return trained


def add_samples(package: Path, trained: dict, *, wrong: str | None = None) -> None:
    """Three more samples in samples/, one row each; ``wrong`` names one whose expected label is off by one."""
    (package / "samples").mkdir(exist_ok=True)
    for name, row, label in zip(
        ("setosa", "versicolor", "virginica"), trained["rows"][:3], trained["labels"][:3], strict=True
    ):
        request = {"input_data": {"columns": ["sl", "sw", "pl", "pw"], "index": [0], "data": [row]}}
        (package / "samples" / f"{name}.request.json").write_text(json.dumps(request))
        expected = [label + 1] if name == wrong else [label]
        (package / "samples" / f"{name}.response.json").write_text(json.dumps(expected))
