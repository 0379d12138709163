"""Batch scoring script for the diabetes-progression sample model.

Follows Azure ML's parallel-run contract: ``init()`` once per worker process, then
``run(mini_batch)`` with a list of CSV file paths (10 feature columns, header row optional).
It returns one row ``<file name>,<row index>,<prediction>`` per input row, which the job
appends to predictions.csv. A file that cannot be read raises, failing its mini-batch.
"""

from __future__ import annotations

import csv
import os

import joblib
import numpy as np

N_FEATURES = 10

model = None


def init() -> None:
    global model
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir:
        raise RuntimeError("AZUREML_MODEL_DIR is not set: the job must point it at the registered model")
    model = joblib.load(os.path.join(model_dir, "model", "model.joblib"))


def read_features(path: str) -> list[list[float]]:
    """The feature rows of one CSV file; a first row that is not numeric is taken as the header."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]
    features = []
    for i, row in enumerate(rows):
        if len(row) != N_FEATURES:
            raise ValueError(f"{os.path.basename(path)} row {i} has {len(row)} values; expected {N_FEATURES}")
        try:
            features.append([float(value) for value in row])
        except ValueError as e:
            raise ValueError(f"{os.path.basename(path)} row {i} holds a value that is not a number ({e})") from e
    return features


def run(mini_batch: list[str]) -> list[str]:
    results = []
    for path in mini_batch:
        features = read_features(path)
        if not features:
            continue
        predictions = model.predict(np.asarray(features, dtype=np.float64))
        name = os.path.basename(path)
        results.extend(f"{name},{i},{float(p)!r}" for i, p in enumerate(predictions))
    return results


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
