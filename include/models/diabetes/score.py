"""Scoring script for the diabetes-progression sample model.

Follows Azure ML's online scoring contract: the server calls ``init()`` once per worker
and ``run(raw_data)`` per request with the raw JSON body ``{"data": [[10 floats], ...]}``.
Input that cannot be scored is answered with HTTP 400 and a JSON error saying what to fix.
"""

from __future__ import annotations

import json
import math
import os

import joblib
import numpy as np
from azureml_inference_server_http.api.aml_response import AMLResponse

N_FEATURES = 10
MAX_ROWS = 10_000

model = None


def init() -> None:
    global model
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set: the server must point it at the registered model")
    model = joblib.load(os.path.join(model_dir, "model", "model.joblib"))


def _bad_request(message: str) -> AMLResponse:
    return AMLResponse({"error": {"code": "BadRequest", "message": message}}, 400, json_str=True)


def _rows_or_error(raw_data: str | bytes) -> list[list[float]] | str:
    try:
        payload = json.loads(raw_data)
    except (TypeError, ValueError) as e:
        return f'request body is not valid JSON ({e}); send {{"data": [[...{N_FEATURES} numbers...]]}}'
    except RecursionError:  # Python's parser gives up near 1,000 levels of nesting: bad input, not a crash
        return f'request body nests too deeply to parse; send {{"data": [[...{N_FEATURES} numbers...]]}}'
    if not isinstance(payload, dict) or "data" not in payload:
        return f'request body must be a JSON object with a "data" key holding rows of {N_FEATURES} numbers'
    rows = payload["data"]
    if not isinstance(rows, list) or not rows:
        return '"data" must be a non-empty list of rows'
    if len(rows) > MAX_ROWS:
        return f'"data" has {len(rows)} rows; send at most {MAX_ROWS} per request'
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != N_FEATURES:
            return f"row {i} must be a list of {N_FEATURES} numbers"
        for value in row:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"row {i} holds {value!r}; every feature must be a finite number"
    return rows


def run(raw_data: str | bytes) -> list[float] | AMLResponse:
    rows = _rows_or_error(raw_data)
    if isinstance(rows, str):
        return _bad_request(rows)
    return model.predict(np.asarray(rows, dtype=np.float64)).tolist()
