"""The model package's requirements.txt as the conda specification Azure ML builds an image from.

Azure ML builds a deployment's environment from a base image plus a conda file; the package
declares its environment as pip requirements (the local runtime builds a venv from the same
file), so the two backends serve the model with the same packages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deployflow.packages import INFERENCE_SERVER

PYTHON_VERSION = "3.11"
CONDA_CHANNELS = ("conda-forge",)
ENVIRONMENT_NAME = "deployflow-model"
#: what a parallel_run_function step's driver imports on an AmlCompute node, besides the model's own
#: packages: the azureml-core run context and the dataset runtime that mounts the inputs
PARALLEL_RUNTIME = ("azureml-core", "azureml-dataset-runtime[fuse]")

# pip options that point at other files: the image build sees only the conda file, not the package
_FILE_OPTIONS = ("-r", "-c", "-e", "--requirement", "--constraint", "--editable")
_INLINE_COMMENT = re.compile(r"\s+#.*$")
# the server's name followed by a version specifier, extras, a marker or nothing
_SERVER = re.compile(rf"^{re.escape(INFERENCE_SERVER)}(?=$|[\s<>=!~;\[@])", re.IGNORECASE)


def read_requirements(text: str, *, source: str = "requirements.txt") -> list[str]:
    """The requirement lines of a requirements file, without comments, blanks or continuations."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        line = _INLINE_COMMENT.sub("", line).strip()
        if not line or line.startswith("#"):
            continue
        option = line.split()[0].split("=")[0]
        if option in _FILE_OPTIONS:
            raise ValueError(
                f"{source}: {line!r} refers to another file, which Azure ML's image build cannot see; "
                "list those requirements in this file instead"
            )
        lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def conda_environment(
    requirements: list[str], *, python: str = PYTHON_VERSION, extra_pip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A conda specification (as Azure ML's ``Environment(conda_file=...)`` takes it) installing the
    requirements with pip on the given Python; ``extra_pip`` names packages the platform needs,
    added unless the requirements already name them."""
    if not any(_SERVER.match(r) for r in requirements):
        raise ValueError(
            f"the requirements must list {INFERENCE_SERVER}: Azure ML runs score.py with it in the image it builds"
        )
    return {
        "name": ENVIRONMENT_NAME,
        "channels": list(CONDA_CHANNELS),
        "dependencies": [f"python={python}", "pip", {"pip": [*requirements, *_missing(extra_pip, requirements)]}],
    }


def _missing(packages: tuple[str, ...], requirements: list[str]) -> list[str]:
    named = {re.split(r"[\s<>=!~;\[@]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    return [p for p in packages if re.split(r"\[", p, maxsplit=1)[0].lower() not in named]


def conda_environment_from_file(
    path: str | Path, *, python: str = PYTHON_VERSION, extra_pip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``conda_environment`` for a package's requirements.txt; errors name the file."""
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as e:
        raise ValueError(f"cannot read {file}: {e.strerror}") from e
    requirements = read_requirements(text, source=str(file))
    try:
        return conda_environment(requirements, python=python, extra_pip=extra_pip)
    except ValueError as e:
        raise ValueError(f"{file}: {e}") from e
