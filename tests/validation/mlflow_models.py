"""MLflow models as users have them: folders written by ``mlflow.sklearn.save_model``, no score.py.

MLflow runs in an environment of its own (mlflow-skinny and scikit-learn, built once by the
environment cache), never in Airflow's: the tests train and save the model there, and ask the
same environment what ``mlflow.pyfunc.load_model(...).predict`` answers in-process, so that the
expected answers are MLflow's own.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from deployflow.runtime.environments import EnvironmentCache
from tests.runtime.support import ENV_CACHE

MLFLOW_TOOLS = """\
mlflow-skinny==3.18.0
scikit-learn==1.9.1
numpy==2.4.6
pandas==3.1.1
"""

SAVE = """
import sys
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=500).fit(X, y)
example = X.iloc[[0, 60, 120]] if sys.argv[2] == "example" else None
signature = infer_signature(X, model.predict(X))
mlflow.sklearn.save_model(model, sys.argv[1], signature=signature, input_example=example,
                          serialization_format="cloudpickle")
"""

PREDICT = """
import json, sys
import mlflow.pyfunc
import pandas
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = json.loads(sys.stdin.read())
columns = model.metadata.get_input_schema().input_names()
print(json.dumps(model.predict(pandas.DataFrame(rows, columns=columns)).tolist()))
"""

# Iris rows of every class, and some that are not in the training set.
ROWS = [[5.1, 3.5, 1.4, 0.2], [5.0, 2.0, 3.5, 1.0], [6.9, 3.2, 5.7, 2.3], [6.1, 2.8, 4.7, 1.2], [4.4, 3.0, 1.3, 0.2]]


def mlflow_python() -> Path:
    return EnvironmentCache(ENV_CACHE).ensure_requirements(MLFLOW_TOOLS)


def save_iris_model(folder: Path, *, input_example: bool = True) -> Path:
    """An MLflow scikit-learn iris classifier, saved the way MLflow's docs show (with a signature)."""
    subprocess.run(
        [str(mlflow_python()), "-c", SAVE, str(folder), "example" if input_example else "none"],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


def signature_columns(folder: Path) -> list[str]:
    """The input column names MLflow wrote into a saved model's signature (MLmodel)."""
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    return [column["name"] for column in json.loads(mlmodel["signature"]["inputs"])]


def pyfunc_predict(folder: Path, rows: list[list[float]]) -> list[Any]:
    """What MLflow's own pyfunc answers in-process for these rows."""
    done = subprocess.run(
        [str(mlflow_python()), "-c", PREDICT, str(folder)], input=json.dumps(rows), check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])
