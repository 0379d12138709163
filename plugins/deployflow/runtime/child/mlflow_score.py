"""The scoring script for an MLflow model with no score.py: Azure ML's no-code MLflow deployment, locally.

azmlinfsrv runs it in an environment built from the model's own requirements (MLflow's pin
turned into mlflow-skinny, as Azure ML's MLflow images have it). It takes the request formats
Azure ML's MLflow serving takes, under ``input_data``:

* a data frame in split orientation: ``{"columns": [...], "index": [...], "data": [[...], ...]}``
* a list of rows: ``[[...], ...]`` (named by the signature's columns when it has them), or of records
* columns by name: ``{"column": [...], ...}``

with optional ``params``, and answers with the predictions as a JSON list (a data frame's as
one record per row). A request the model cannot take — not JSON, no ``input_data``, or data
that does not fit the signature — gets HTTP 400 with ``{"error": ...}``; the model's own
failures stay 500, as on Azure ML.
"""

import json
import os
from pathlib import Path

import mlflow.pyfunc
import numpy
import pandas
from azureml.contrib.services.aml_response import AMLResponse
from mlflow.exceptions import MlflowException

CLIENT_ERRORS = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST"}
model = None
columns = None


def model_folder():
    """The folder holding MLmodel: AZUREML_MODEL_DIR itself, or its one subfolder (Azure ML's layout)."""
    root = Path(os.environ["AZUREML_MODEL_DIR"])
    if (root / "MLmodel").is_file():
        return root
    found = sorted(path.parent for path in root.glob("*/MLmodel"))
    if len(found) != 1:
        raise RuntimeError(f"expected one MLmodel file in {root} or one folder below it, found {len(found)}")
    return found[0]


def init():
    global model, columns
    model = mlflow.pyfunc.load_model(str(model_folder()))
    schema = model.metadata.get_input_schema()
    has_names = schema is not None and not schema.is_tensor_spec() and schema.has_input_names()
    columns = schema.input_names() if has_names else None


def bad_request(message):
    return AMLResponse({"error": message}, 400, json_str=True)


def model_input(data):
    """A data frame (or array) for pyfunc from what came under input_data."""
    if isinstance(data, dict) and "data" in data:
        return pandas.DataFrame(data=data["data"], columns=data.get("columns"), index=data.get("index"))
    if isinstance(data, dict):
        if columns is None and not all(isinstance(v, list) for v in data.values()):
            raise ValueError("named inputs must each be a list")
        return pandas.DataFrame(data) if columns is not None else {k: numpy.array(v) for k, v in data.items()}
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        return pandas.DataFrame.from_records(data)
    if isinstance(data, list):
        return pandas.DataFrame(data, columns=columns) if columns is not None else numpy.array(data)
    raise ValueError(f"input_data must be an object or a list, not {type(data).__name__}")


def answer(predictions):
    if isinstance(predictions, pandas.DataFrame):
        return json.loads(predictions.to_json(orient="records"))
    if isinstance(predictions, (pandas.Series, numpy.ndarray)):
        return predictions.tolist()
    return predictions


def run(raw_data):
    try:
        body = json.loads(raw_data)
    except ValueError as e:
        return bad_request(f"the request body is not JSON ({e})")
    if not isinstance(body, dict) or "input_data" not in body:
        return bad_request('the request must be a JSON object with "input_data" (and optionally "params")')
    try:
        frame = model_input(body["input_data"])
    except (TypeError, ValueError) as e:
        return bad_request(f"input_data does not make a data frame: {e}")
    params = body.get("params")
    try:
        predictions = model.predict(frame, params=params) if params else model.predict(frame)
    except MlflowException as e:
        if e.error_code in CLIENT_ERRORS:
            return bad_request(str(e))
        raise
    return answer(predictions)
