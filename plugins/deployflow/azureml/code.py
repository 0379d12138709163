"""The folder Azure ML uploads as a deployment's or a batch step's code: the package without its model.

The model's files (``model/``) are already registered as the model asset, which Azure ML mounts
for the scoring script (``AZUREML_MODEL_DIR``, or ``--model_dir`` in a parallel step); uploading
the package whole would send them a second time as code. The copy holds everything else
(``score.py``, ``requirements.txt``, the scripts and modules beside them) and, for a batch step,
deployflow's entry script.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployflow.packages import MODEL_DIR

_NEVER = ("__pycache__",)


@contextmanager
def code_folder(package: Path, *, extra: dict[str, Path] | None = None) -> Iterator[Path]:
    """A temporary copy of ``package`` without ``model/`` (and caches), plus ``extra`` files by name;
    removed on exit, once the SDK has uploaded it. It keeps the package's folder name."""
    root = package.resolve()

    def ignored(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in _NEVER or n.endswith(".pyc")}
        if Path(directory).resolve() == root and MODEL_DIR in names:
            skip.add(MODEL_DIR)
        return skip

    with tempfile.TemporaryDirectory(prefix="deployflow-code-") as temporary:
        target = Path(temporary) / root.name
        shutil.copytree(root, target, ignore=ignored)
        for name, source in (extra or {}).items():
            shutil.copyfile(source, target / name)
        yield target


@contextmanager
def scripts_folder(name: str, files: dict[str, Path]) -> Iterator[Path]:
    """A temporary folder named ``name`` holding only ``files`` (by name): the code of a step whose model
    is the whole package (an MLflow folder), so nothing of it is uploaded twice."""
    with tempfile.TemporaryDirectory(prefix="deployflow-code-") as temporary:
        target = Path(temporary) / name
        target.mkdir()
        for file_name, source in files.items():
            shutil.copyfile(source, target / file_name)
        yield target
