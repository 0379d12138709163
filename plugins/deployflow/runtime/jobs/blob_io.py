"""Where batch jobs read and write files: a local folder, or a blob prefix (Azure Storage or Azurite).

``blob://<container>/<prefix>`` is reached with azure-storage-blob and a connection string the
caller hands over with the job; it lives in memory for the job's lifetime only. A prefix is a
virtual folder: ``blob://in/day1`` holds the blobs named ``day1/...``. Outputs are published
whole or not at all: a folder gets each file by temp file + rename, a blob prefix gets its
uploads only after the job has completed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerClient

BLOB_SCHEME = "blob://"
FILE_SCHEME = "file://"


class StorageError(RuntimeError):
    """A location cannot be read or written; the message names it and says what to check."""


@dataclass(frozen=True)
class Location:
    """A parsed input or output URI: either ``folder`` or ``container`` (+ ``prefix``) is set."""

    uri: str
    folder: Path | None = None
    container: str | None = None
    prefix: str = ""

    @property
    def is_blob(self) -> bool:
        return self.container is not None


def parse_location(uri: str) -> Location:
    """Parse a local folder (absolute path or file://) or ``blob://<container>/<prefix>``."""
    if uri.startswith(BLOB_SCHEME):
        container, _, prefix = uri[len(BLOB_SCHEME) :].partition("/")
        if not container:
            raise StorageError(f"{uri} names no container; write blob://<container>/<prefix>")
        prefix = prefix.strip("/")
        return Location(uri, container=container, prefix=f"{prefix}/" if prefix else "")
    if uri.startswith(FILE_SCHEME):
        path = Path(urlparse(uri).path)
    elif "://" in uri or uri.startswith("azureml:"):
        raise StorageError(
            f"the local runtime reads and writes local folders and blob://<container>/<prefix>, not {uri}; "
            "Azure ML data URIs need the azureml platform"
        )
    else:
        path = Path(uri)
    if not path.is_absolute():
        raise StorageError(f"folder {uri} must be an absolute path (the runtime has its own working directory)")
    return Location(uri, folder=path)


def list_files(location: Location, only: Sequence[str] = (), connection_string: str | None = None) -> list[str]:
    """Names of the files under the location (relative, '/'-separated, sorted), limited to ``only``."""
    if location.is_blob:
        found = _blob_names(location, connection_string_for(connection_string, location))
    else:
        assert location.folder is not None
        if not location.folder.is_dir():
            raise StorageError(f"input folder {location.folder} does not exist or is not a folder")
        found = [
            p.relative_to(location.folder).as_posix()
            for p in location.folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(location.folder).parts)
        ]
    if only:
        missing = sorted(set(only) - set(found))
        if missing:
            shown = ", ".join(missing[:10])
            raise StorageError(f"{len(missing)} input file(s) not found under {location.uri}: {shown}")
        found = [name for name in found if name in set(only)]
    return sorted(found)


def fetch(
    location: Location, names: Sequence[str], dest: Path, connection_string: str | None = None, *, copy: bool = False
) -> list[Path]:
    """Local paths of the named files: the files themselves for a folder (copies into ``dest`` with ``copy``),
    downloads into ``dest`` for blobs."""
    if not location.is_blob:
        assert location.folder is not None
        if not copy:
            return [location.folder / name for name in names]
        copies = []
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(location.folder / name, target)
            copies.append(target)
        return copies
    paths = []
    with _container(location, connection_string_for(connection_string, location)) as container:
        for name in names:
            target = (dest / name).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise StorageError(f"blob {location.prefix}{name} has a name that leaves its folder; rename it")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "wb") as f:
                    container.download_blob(location.prefix + name).readinto(f)
            except AzureError as e:
                raise StorageError(
                    f"downloading {location.prefix}{name} from {location.uri} failed: {_reason(e)}"
                ) from e
            paths.append(target)
    return paths


def publish(location: Location, files: dict[str, Path], connection_string: str | None = None) -> None:
    """Put each local file at ``location/<name>``, replacing what was there; a file is never half-written."""
    if location.is_blob:  # summary.json goes last: its presence says the outputs are whole
        try:
            with _container(location, connection_string_for(connection_string, location)) as container:
                if not container.exists():
                    container.create_container()
                for name, path in files.items():
                    with open(path, "rb") as f:
                        container.upload_blob(location.prefix + name, f, overwrite=True)
        except AzureError as e:
            raise StorageError(f"uploading the outputs to {location.uri} failed: {_reason(e)}") from e
        return
    assert location.folder is not None
    location.folder.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=location.folder)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(temp, location.folder / name)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def check_reachable(location: Location, connection_string: str | None) -> None:
    """Fail at submission on what can be known at once: a missing connection string or input folder."""
    if location.is_blob:
        connection_string_for(connection_string, location)
    elif location.folder is not None and not location.folder.is_dir():
        raise StorageError(f"input folder {location.folder} does not exist or is not a folder")


def connection_string_for(connection_string: str | None, location: Location) -> str:
    """The connection string a blob location needs; an error saying so when there is none."""
    if not connection_string:
        raise StorageError(f"{location.uri} is a blob location: submit the job with a storage_connection_string")
    return connection_string


def _container(location: Location, connection_string: str) -> ContainerClient:
    """A client of its own (closed with ``with``), so no connection outlives the call."""
    try:
        return ContainerClient.from_connection_string(connection_string, location.container)
    except ValueError as e:
        raise StorageError(f"the storage connection string for {location.uri} is not valid") from e


def _blob_names(location: Location, connection_string: str) -> list[str]:
    try:
        with _container(location, connection_string) as container:
            blobs = list(container.list_blobs(name_starts_with=location.prefix or None))
    except AzureError as e:
        raise StorageError(f"listing {location.uri} failed: {_reason(e)}") from e
    return [b.name[len(location.prefix) :] for b in blobs if not b.name.endswith("/")]


def _reason(error: BaseException) -> str:
    """The SDK's error without its request details (they hold URLs, never keys, but are long)."""
    code = getattr(error, "error_code", None)
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"{code}: {first_line}" if code else first_line
