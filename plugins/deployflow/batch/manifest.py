"""The manifest: which input blobs were taken, at which etag, by which run, and how it went.

It lives at ``<output prefix>/_manifest.json``. A blob is new when the manifest does not
list it, or lists it with another etag (its content was replaced). Each entry says whether
the blob was ``scored``, ``failed`` (quarantined, with its error) or ``skipped`` (with the
reason): a bad or empty file is taken once, not picked up by every later run, until it is
replaced. Pure data in, data out; reading and writing it with an etag condition is the
storage module's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MANIFEST_VERSION = 1
SCORED, FAILED, SKIPPED = "scored", "failed", "skipped"


class ManifestError(ValueError):
    """The manifest blob holds something that is not a manifest."""


@dataclass(frozen=True)
class BlobRef:
    """An input blob (full name in its container) at one version (its etag)."""

    name: str
    etag: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "etag": self.etag}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlobRef:
        return cls(str(data["name"]), str(data["etag"]))


@dataclass(frozen=True)
class Entry:
    """What the manifest knows about one blob a run took: ``error`` says why it failed or was skipped."""

    etag: str
    run_id: str
    output_uri: str
    scored_at: str
    status: str = SCORED
    error: str | None = None


Manifest = dict[str, Entry]


def parse_manifest(text: str | bytes | None, *, where: str = "the manifest") -> Manifest:
    """The manifest's entries by blob name; None or empty text is an empty manifest."""
    if not text:
        return {}
    try:
        document = json.loads(text)
        if document.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{where} has version {document.get('version')!r}; this code reads version 1")
        return {name: Entry(**entry) for name, entry in document["blobs"].items()}
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
        raise ManifestError(
            f"{where} is not a deployflow manifest ({e}); move it aside and the next run rescores everything"
        ) from e


def dump_manifest(manifest: Manifest) -> str:
    """The manifest as JSON, blobs sorted by name so diffs stay readable."""
    blobs = {name: vars(manifest[name]) for name in sorted(manifest)}
    return json.dumps({"version": MANIFEST_VERSION, "blobs": blobs}, indent=1) + "\n"


def new_blobs(listed: Iterable[BlobRef], manifest: Manifest) -> list[BlobRef]:
    """The listed blobs the manifest does not hold at the same etag, sorted by name."""
    fresh = [blob for blob in listed if (entry := manifest.get(blob.name)) is None or entry.etag != blob.etag]
    return sorted(fresh, key=lambda blob: blob.name)


@dataclass(frozen=True)
class Outcome:
    """How a blob a run took without scoring it ended: ``status`` FAILED or SKIPPED, why, and where
    it is kept (a failed blob's quarantined copy)."""

    status: str
    error: str
    location: str


def with_scored(
    manifest: Manifest,
    scored: Iterable[BlobRef],
    *,
    run_id: str,
    output_uri: str,
    scored_at: str,
    unscored: Mapping[BlobRef, Outcome] | None = None,
) -> Manifest:
    """A new manifest: ``manifest`` plus one entry per blob the run took (a retaken blob's entry is
    replaced): scored, or failed or skipped as ``unscored`` says."""
    merged = dict(manifest)
    for blob in scored:
        merged[blob.name] = Entry(etag=blob.etag, run_id=run_id, output_uri=output_uri, scored_at=scored_at)
    for blob, outcome in (unscored or {}).items():
        merged[blob.name] = Entry(blob.etag, run_id, outcome.location, scored_at, outcome.status, outcome.error)
    return merged
