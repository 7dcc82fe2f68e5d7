"""What the server answers, as small typed records (each keeps the whole answer in `raw`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _opt_str(data: Mapping[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class FileEntry:
    """One file of a version or transaction: its path in the version, size and sha256."""

    path: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "FileEntry":
        return cls(path=_str(data, "path"), size=_int(data, "size"), sha256=_str(data, "sha256"))


@dataclass(frozen=True)
class Manifest:
    """A committed version: (repo, name, version), its files and metadata."""

    repo: str
    name: str
    version: str
    files: list[FileEntry]
    metadata: Mapping[str, Any]
    created_at: str
    transaction: Optional[str]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Manifest":
        files = data.get("files")
        metadata = data.get("metadata")
        return cls(
            repo=_str(data, "repo"),
            name=_str(data, "name"),
            version=_str(data, "version"),
            files=[FileEntry.from_json(f) for f in files if isinstance(f, dict)]
            if isinstance(files, list)
            else [],
            metadata=metadata if isinstance(metadata, dict) else {},
            created_at=_str(data, "created_at"),
            transaction=_opt_str(data, "transaction"),
            raw=data,
        )

    def file(self, path: str) -> Optional[FileEntry]:
        """The file stored at `path`, if the version has one."""
        return next((f for f in self.files if f.path == path), None)

    @property
    def size(self) -> int:
        """Total bytes of the version's files."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class VersionInfo:
    """One committed version in a listing."""

    version: str
    created_at: str
    size: int
    files: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "VersionInfo":
        return cls(
            version=_str(data, "version"),
            created_at=_str(data, "created_at"),
            size=_int(data, "size"),
            files=_int(data, "files"),
        )


@dataclass(frozen=True)
class Tag:
    """Where a tag points now. In the answer to a move, `previous` is where it pointed
    before and `moved` False when it pointed at the version already (nothing was written)."""

    tag: str
    version: str
    moved_at: str
    moved_by: Optional[str]
    previous: Optional[str] = None
    moved: Optional[bool] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Tag":
        return cls(
            tag=_str(data, "tag"),
            version=_str(data, "version"),
            moved_at=_str(data, "moved_at"),
            moved_by=_opt_str(data, "moved_by"),
            previous=_opt_str(data, "previous"),
            moved=data.get("moved") if isinstance(data.get("moved"), bool) else None,
        )


@dataclass(frozen=True)
class TagMove:
    """One move of a tag in its history, newest first: `version` None when the move removed
    the tag, `previous` None when it created it."""

    version: Optional[str]
    previous: Optional[str]
    at: str
    by: Optional[str]
    seq: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TagMove":
        return cls(
            version=_opt_str(data, "version"),
            previous=_opt_str(data, "previous"),
            at=_str(data, "at"),
            by=_opt_str(data, "by"),
            seq=_int(data, "seq"),
        )
