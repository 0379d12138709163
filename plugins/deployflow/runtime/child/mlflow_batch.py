"""The batch script for an MLflow model with no scoring script: Azure ML's MLflow batch deployment, in deployflow.

The batch worker (locally) or deployflow's parallel entry (on Azure ML) runs it in an environment
built from the model's own requirements (mlflow-skinny and pandas added). ``init()`` loads the
pyfunc from ``AZUREML_MODEL_DIR``; ``run(mini_batch)`` reads each file as a data frame — CSV
(with a header row), or parquet when pyarrow is in the model's environment — calls ``predict`` and
returns one row per input row: the file's name, the row's number in that file, then the
prediction's value(s). A file that cannot be read or predicted raises ``FileScoringError`` (a
``ValueError``, naming the file and what to fix): the runtime then scores the mini-batch's files
one by one, so that file alone fails and is quarantined, and the others are scored.
"""

import os
from pathlib import Path

import mlflow.pyfunc
import numpy
import pandas
from mlflow.exceptions import MlflowException

CSV_SUFFIXES = {".csv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
MAX_ERROR_CHARS = 600
model = None
columns = None


class FileScoringError(ValueError):
    """One input file could not be scored; the message names the file and the fix."""


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


def one_line(error):
    """An error's text on one line, cut short: the runtime and the manifest keep a file's error as one line."""
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def read_frame(path):
    """The file as a data frame, by its suffix; anything unreadable is the file's fault, named."""
    name = os.path.basename(path)
    suffix = Path(path).suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        try:
            import pyarrow  # noqa: F401 - pandas reads parquet through it
        except ImportError:
            raise FileScoringError(
                f"{name}: reading parquet needs pyarrow, which the model's environment lacks; "
                "add pyarrow to the model's requirements.txt, or send CSV files"
            ) from None
        try:
            return pandas.read_parquet(path)
        except (OSError, ValueError) as e:
            raise FileScoringError(f"{name}: not a readable parquet file ({one_line(e)})") from e
    if suffix not in CSV_SUFFIXES:
        given = suffix or "a name with no suffix"
        raise FileScoringError(f"{name}: MLflow batch scoring reads .csv and .parquet files, not {given}")
    try:
        return pandas.read_csv(path)
    except (UnicodeError, ValueError) as e:  # pandas' parser and empty-data errors are ValueErrors
        raise FileScoringError(f"{name}: not a readable CSV file with a header row ({one_line(e)})") from e


def prediction_rows(predictions, count):
    """The predictions as ``count`` lists of values (a data frame's columns, an array's elements)."""
    if isinstance(predictions, pandas.DataFrame):
        values = predictions.to_numpy().tolist()
    elif isinstance(predictions, pandas.Series):
        values = [[value] for value in predictions.tolist()]
    else:
        array = numpy.asarray(predictions)
        values = [[value] for value in array.tolist()] if array.ndim == 1 else array.reshape(count, -1).tolist()
    if len(values) != count:
        raise ValueError(f"the model returned {len(values)} predictions for {count} rows")
    return values


def score_file(path):
    name = os.path.basename(path)
    frame = read_frame(path)
    if columns is not None:
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise FileScoringError(f"{name}: columns {missing} that the model's signature names are missing")
    if frame.empty:
        return []  # a header and no rows: nothing to predict
    try:
        values = prediction_rows(model.predict(frame), len(frame))
    except (MlflowException, ValueError, TypeError, LookupError) as e:  # the model refused this file's data
        why = f"{type(e).__name__}: {one_line(e)}"
        raise FileScoringError(f"{name}: the model could not predict its rows ({why})") from e
    return [[name, index, *row] for index, row in enumerate(values)]


def run(mini_batch):
    rows = []
    for path in mini_batch:
        rows.extend(score_file(str(path)))
    return rows
