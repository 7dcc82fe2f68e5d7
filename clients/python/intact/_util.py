"""Small shared pieces: URL segments, local hashing, sizes."""

from __future__ import annotations

import hashlib
import os
from typing import Union
from urllib.parse import quote

# Bytes read from a file or the network at a time: memory stays this small whatever the size.
CHUNK_BYTES = 1 << 20
# The most digests one POST /api/v1/blobs/missing takes.
MISSING_BATCH = 10_000

PathLike = Union[str, "os.PathLike[str]"]


def segment(value: str) -> str:
    """One URL path segment. `.` and `..` are percent-encoded too: HTTP libraries remove
    literal dot segments before sending (publishing `a/../b` as `b`), whereas the server
    refuses the encoded form with a 400 naming the field."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def segments(value: str) -> str:
    """A `/`-separated name or file path as URL path segments."""
    return "/".join(segment(part) for part in value.split("/"))


def sha256_of_file(path: PathLike) -> tuple[str, int]:
    """(hex sha256, size) of a local file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
