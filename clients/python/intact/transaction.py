"""A transaction publishing one version: a context manager that commits when its block ends
normally and aborts when anything is raised inside it."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

from ._util import PathLike, segment, segments, sha256_of_file
from .errors import (
    BlobNotStoredError,
    ChecksumMismatchError,
    IdempotencyMismatchError,
    IntactError,
    IntegrityError,
    NotFoundError,
    NotOpenError,
    UnavailableError,
    UploadsInProgressError,
)
from .models import FileEntry, Manifest

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Transaction", "Source"]

log = logging.getLogger("intact")

Source = Union[PathLike, IO[bytes]]
"""What a file's bytes come from: a local path, or a binary file object (read from where it
stands; one that cannot seek is uploaded without being hashed first, so it is always sent)."""

# How often a commit refused with `uploads_in_progress` is tried again (only possible when the
# caller adds files from other threads while committing).
COMMIT_ATTEMPTS = 10
# Opening and committing are safe to repeat (the open carries an idempotency key, a commit of a
# committed transaction answers its manifest), so a connection that broke before the answer
# arrived is tried again this many times, these seconds apart.
RECONNECT_DELAYS = (0.5, 1.0, 2.0)
# The server's default lease, until it says otherwise.
DEFAULT_LEASE_SECONDS = 300.0


@dataclass
class _Pending:
    """A file to add, hashed but not yet sent."""

    path: str
    local: Optional[str]
    stream: Optional[IO[bytes]]
    start: Optional[int]
    sha256: Optional[str]
    # True when the client hashed the bytes itself (so a changed file may be hashed again);
    # False when the caller declared the digest.
    hashed_here: bool


class Transaction:
    """One version being published. Made by `Client.transaction`; see there.

    After the block: `manifest` is the committed version, `created` says whether this
    commit made it (False: identical content was committed already, e.g. a retried job).
    `uploaded` lists the paths whose bytes were sent, `already_stored` those added by digest
    because the server held the bytes, `already_staged` those a resumed transaction held
    already; `uploaded_bytes` counts what was sent.

    With an idempotency key that already committed (`replayed`), nothing is sent: each file
    added is hashed and compared with the committed version, and any difference raises
    `IdempotencyMismatchError` (a re-run job must not silently get a version with other
    content). With a key whose transaction is still open (`resumed`, the first run died
    mid-way), that transaction goes on: files already staged with the same bytes are not
    sent again, and at commit files the first run staged but this one did not add are
    dropped, so the version holds what this run added.
    """

    def __init__(
        self,
        client: "Client",
        *,
        repo: str,
        name: str,
        version: str,
        metadata: Optional[Mapping[str, Any]],
        idempotency_key: Optional[str],
        from_version: Optional[str],
        lease_seconds: Optional[int],
        wait_seconds: Optional[int],
    ) -> None:
        self._client = client
        self.repo = repo
        self.name = name
        self.version = version
        self.metadata = metadata
        self.idempotency_key = idempotency_key
        self.from_version = from_version
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.id: Optional[str] = None
        # new -> open -> committed | aborted; `expired` only as the server reports it.
        self.state = "new"
        self.expires_at: Optional[str] = None
        self.manifest: Optional[Manifest] = None
        self.created: Optional[bool] = None
        self.resumed = False
        self.replayed = False
        self.uploaded: list[str] = []
        self.already_stored: list[str] = []
        self.already_staged: list[str] = []
        self.uploaded_bytes = 0
        self.skipped: list[str] = []
        # What this client added and removed in this run, by path.
        self._added: dict[str, FileEntry] = {}
        self._removed: set[str] = set()
        # The server's staged files as last seen (the open answer plus this run's changes).
        self._staged: dict[str, FileEntry] = {}
        # Digests this transaction staged: addable by digest without asking.
        self._held: set[str] = set()
        # The key sent with the open: the caller's, else one of this object's own, so that an
        # open whose answer was lost can be repeated without opening a second transaction.
        self._open_key = idempotency_key or f"intact-py-{uuid.uuid4().hex}"
        self._lease = float(lease_seconds or DEFAULT_LEASE_SECONDS)
        # When the lease was last renewed (monotonic): hashing a large tree sends nothing, so
        # the client renews the lease itself when a third of it has passed.
        self._renewed_at = 0.0

    def __repr__(self) -> str:
        return f"<Transaction {self.id or '(not open)'} {self.repo}/{self.name}@{self.version} {self.state}>"

    # --- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> "Transaction":
        self.begin()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            if self.state == "aborted":
                return  # the block called abort() itself
            try:
                self.commit()
            except BaseException as commit_error:
                # A refused commit leaves the transaction open (and the version locked) until
                # its lease ends; give it back now. An abort after a commit that did go
                # through is refused by the server and changes nothing.
                self._abort_quietly(commit_error)
                raise
            return
        self._abort_quietly(exc)  # and the exception goes on up

    def begin(self) -> "Transaction":
        """Opens the transaction (done by entering the `with` block)."""
        if self.state != "new":
            raise IntactError(f"{self!r} was opened already")
        body: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.metadata is not None:
            body["metadata"] = self.metadata
        body["idempotency_key"] = self._open_key
        if self.from_version is not None:
            body["from_version"] = self.from_version
        if self.lease_seconds is not None:
            body["lease_seconds"] = self.lease_seconds
        if self.wait_seconds is not None:
            body["wait_seconds"] = self.wait_seconds
        # With wait_seconds the server holds the answer until the lock is free: the client's
        # read timeout must outlast that wait, or it would give up on (and repeat) an open
        # that is only waiting.
        timeout = self._client.timeout + (self.wait_seconds or 0)
        resp = _reconnecting(
            lambda: self._client.request(
                "POST",
                f"/api/v1/repos/{segment(self.repo)}/transactions",
                json=body,
                ok=(200, 201),
                timeout=timeout,
            )
        )
        data = self._client._json(resp)
        self._take(data)
        self._renewed_at = time.monotonic()
        committed = data.get("manifest")
        if resp.status_code == 201 or (self.idempotency_key is None and not isinstance(committed, dict)):
            # (201, or our own key answering a repeated open whose first answer was lost.)
            self.state = "open"
        elif isinstance(committed, dict):
            # The key's transaction committed before (a re-run job): that version is the answer.
            self.replayed = True
            self.state = "committed"
            self.created = False
            self.manifest = Manifest.from_json(committed)
            self.version = self.manifest.version
        else:
            self.resumed = True
            self.state = "open"
            log.info("resuming open transaction %s under key %s", self.id, self.idempotency_key)
        return self

    def _take(self, data: Mapping[str, Any]) -> None:
        """Takes the id, version, lease and staged files from a transaction answer."""
        txn_id = data.get("id")
        if not isinstance(txn_id, str) or not txn_id:
            raise IntactError("the server's transaction answer has no id")
        self.id = txn_id
        version = data.get("version")
        if isinstance(version, str) and version:
            self.version = version
        expires = data.get("expires_at")
        self.expires_at = expires if isinstance(expires, str) else self.expires_at
        lease = data.get("lease_seconds")
        if isinstance(lease, (int, float)) and not isinstance(lease, bool) and lease > 0:
            self._lease = float(lease)
        files = data.get("files")
        if isinstance(files, list):
            self._staged = {
                entry.path: entry for entry in (FileEntry.from_json(f) for f in files if isinstance(f, dict))
            }
            self._held = {entry.sha256 for entry in self._staged.values()}

    @property
    def _txn_path(self) -> str:
        return f"/api/v1/transactions/{segment(self.id or '')}"

    def _require_open(self) -> None:
        if self.state == "committed" and self.replayed:
            return
        if self.state != "open":
            raise NotOpenError(
                f"{self!r} is {self.state}: files can be added only while it is open",
                code="not_open",
                body={"state": self.state},
            )

    def refresh(self) -> "Transaction":
        """Reads the transaction's state and staged files from the server."""
        data = self._client.get_json(self._txn_path)
        self._take(data)
        state = data.get("state")
        if isinstance(state, str) and not self.replayed:
            self.state = state
        return self

    @property
    def files(self) -> Mapping[str, FileEntry]:
        """The files staged so far (as this client last saw them), by path."""
        return dict(self._staged)

    def renew(self) -> None:
        """Extends the lease by its length from now (uploads renew it too; call this when
        the job computes for longer than the lease between adds)."""
        self._require_open()
        if self.replayed:
            return
        data = self._client._json(self._client.request("POST", f"{self._txn_path}/renew"))
        expires = data.get("expires_at")
        self.expires_at = expires if isinstance(expires, str) else self.expires_at
        self._renewed_at = time.monotonic()

    def _keep_alive(self) -> None:
        """Renews the lease once a third of it passed since the last renewal (hashing and
        adding by digest send no bytes, which is what renews it on the server)."""
        if self.state == "open" and time.monotonic() - self._renewed_at > self._lease / 3:
            self.renew()

    def commit(self) -> Manifest:
        """Makes the version visible (done at the end of the `with` block)."""
        if self.state == "committed" and self.manifest is not None:
            if self.replayed:
                self._check_replay()
            return self.manifest
        self._require_open()
        if self.resumed:
            self._drop_leftovers()
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                resp = _reconnecting(
                    lambda: self._client.request("POST", f"{self._txn_path}/commit", ok=(200, 201))
                )
                break
            except UploadsInProgressError:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(0.1 * attempt)
        self.manifest = Manifest.from_json(self._client._json(resp))
        self.created = resp.status_code == 201
        self.state = "committed"
        self.version = self.manifest.version
        return self.manifest

    def abort(self) -> None:
        """Rolls the transaction back: nothing of it becomes visible (done when the `with`
        block raises)."""
        if self.state in ("new", "aborted", "expired"):
            self.state = "aborted" if self.state == "new" else self.state
            return
        if self.state == "committed":
            raise NotOpenError(
                f"{self!r} committed: a version never changes, publish a new one",
                code="not_open",
                body={"state": "committed"},
            )
        self._client.request("DELETE", self._txn_path, ok=(204,))
        self.state = "aborted"

    def _abort_quietly(self, cause: BaseException) -> None:
        if self.state != "open":
            return
        try:
            self.abort()
        except Exception as e:  # the original failure matters more; the lease ends it anyway
            note = f"aborting transaction {self.id} failed too ({e}); its lease will end it"
            log.warning(note)
            if hasattr(cause, "add_note"):  # Python 3.11+
                cause.add_note(note)

    # --- files --------------------------------------------------------------------------

    def add_file(self, path: str, source: Source, sha256: Optional[str] = None) -> FileEntry:
        """Adds (or replaces) `path` in the version with the bytes of `source`, a local file
        or a binary file object. The bytes are hashed first and not sent when the server
        holds them already (`sha256`, when given, saves the hashing; the server checks it)."""
        return self.add_files([(path, source, sha256)])[0]

    def add_tree(self, local_dir: PathLike, prefix: str = "") -> list[FileEntry]:
        """Adds every regular file under `local_dir` (symlinks and other special files are
        skipped and listed in `skipped`), at its relative path under `prefix`. Hashes them
        all, asks the server once per 10,000 which bytes it lacks, and uploads only those."""
        root = Path(local_dir)
        if not root.is_dir():
            raise NotADirectoryError(f"{root} is not a directory")
        base = prefix.strip("/")
        items: list[tuple[str, Source]] = []

        def walk(directory: Path, rel: list[str]) -> None:
            with os.scandir(directory) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    parts = [*rel, entry.name]
                    if entry.is_dir(follow_symlinks=False):
                        walk(Path(entry.path), parts)
                    elif entry.is_file(follow_symlinks=False):
                        path = "/".join([base, *parts] if base else parts)
                        items.append((path, entry.path))
                    else:
                        self.skipped.append(entry.path)
                        log.warning("skipping %s (not a regular file)", entry.path)

        walk(root, [])
        return self.add_files(items)

    def add_files(
        self, items: Iterable[Union[tuple[str, Source], tuple[str, Source, Optional[str]]]]
    ) -> list[FileEntry]:
        """Adds many files: `(path, source)` or `(path, source, sha256)` each. Hashes them
        all first, asks once per 10,000 which bytes the server lacks, adds the rest by digest
        and uploads only what is missing (the same new bytes once)."""
        self._require_open()
        pending = []
        for item in items:
            pending.append(self._prepare(*item))
            self._keep_alive()
        if self.replayed:
            return [self._compare_with_committed(p) for p in pending]
        to_ask = [
            p.sha256
            for p in pending
            if p.sha256 is not None and p.sha256 not in self._held and not self._staged_as(p.path, p.sha256)
        ]
        missing: Optional[set[str]] = None
        if to_ask:
            try:
                missing = self._client.missing_blobs(to_ask)
            except NotFoundError:
                missing = None  # a server without POST /blobs/missing: upload everything
        added = []
        for p in pending:
            added.append(self._send(p, missing))
            self._keep_alive()
        return added

    def _prepare(self, path: str, source: Source, sha256: Optional[str] = None) -> _Pending:
        if not isinstance(path, str) or not path:
            raise ValueError(f"a file's path in the version must be a non-empty string, not {path!r}")
        if sha256 is not None:
            sha256 = sha256.strip().lower()
            if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
                raise ValueError(f"sha256 of {path} must be 64 hex characters, not {sha256!r}")
        if isinstance(source, (str, os.PathLike)):
            local = os.fspath(source)
            hashed_here = sha256 is None
            if sha256 is None:
                sha256, _ = sha256_of_file(local)
            return _Pending(path, local, None, None, sha256, hashed_here)
        if not hasattr(source, "read"):
            raise TypeError(
                f"the bytes of {path} must come from a path or a binary file object, not {type(source).__name__}"
            )
        start: Optional[int] = None
        if source.seekable():
            start = source.tell()
        hashed_here = False
        if sha256 is None and start is not None:
            digest = hashlib.sha256()
            while chunk := source.read(1 << 20):
                if not isinstance(chunk, bytes):
                    raise TypeError(f"the file object for {path} must be opened in binary mode")
                digest.update(chunk)
            source.seek(start)
            sha256 = digest.hexdigest()
            hashed_here = True
        return _Pending(path, None, source, start, sha256, hashed_here)

    def _staged_as(self, path: str, sha256: str) -> bool:
        entry = self._staged.get(path)
        return entry is not None and entry.sha256 == sha256

    def _send(self, p: _Pending, missing: Optional[set[str]]) -> FileEntry:
        if p.sha256 is not None and self.resumed and self._staged_as(p.path, p.sha256):
            entry = self._staged[p.path]
            self.already_staged.append(p.path)
            return self._record(entry)
        if p.sha256 is not None and (
            p.sha256 in self._held or (missing is not None and p.sha256 not in missing)
        ):
            try:
                entry = self._put_by_digest(p.path, p.sha256)
                self.already_stored.append(p.path)
                return self._record(entry)
            except BlobNotStoredError:
                pass  # swept since the server said it held them, or never ours: upload
        return self._record(self._upload(p))

    def _record(self, entry: FileEntry) -> FileEntry:
        self._staged[entry.path] = entry
        self._added[entry.path] = entry
        self._removed.discard(entry.path)
        self._held.add(entry.sha256)
        return entry

    def _file_path(self, path: str) -> str:
        return f"{self._txn_path}/files/{segments(path)}"

    def _put_by_digest(self, path: str, sha256: str) -> FileEntry:
        resp = self._client.request(
            "PUT", self._file_path(path), headers={"x-blob-sha256": sha256}, ok=(200, 201)
        )
        return FileEntry.from_json(self._client._json(resp))

    def _upload(self, p: _Pending) -> FileEntry:
        headers = {"content-type": "application/octet-stream"}
        if p.sha256 is not None:
            headers["x-checksum-sha256"] = p.sha256
        if p.local is not None:
            local = p.local

            def open_local() -> Any:
                f = open(local, "rb")
                if os.fstat(f.fileno()).st_size == 0:
                    # requests sends an empty file object chunked; say Content-Length: 0.
                    f.close()
                    return b""
                return f

            try:
                resp = self._client.request(
                    "PUT",
                    self._file_path(p.path),
                    body=open_local,
                    headers=headers,
                    ok=(200, 201),
                    close_body=True,
                )
            except ChecksumMismatchError:
                if not p.hashed_here:
                    raise
                # The file changed between hashing and sending: hash what is there now.
                log.warning("%s changed while being published; hashing it again", local)
                p.sha256, _ = sha256_of_file(local)
                p.hashed_here = False
                return self._upload(p)
        else:
            stream = p.stream
            start = p.start
            assert stream is not None

            def rewind() -> Any:
                if start is not None:
                    stream.seek(start)
                return stream

            resp = self._client.request(
                "PUT",
                self._file_path(p.path),
                body=rewind,
                headers=headers,
                ok=(200, 201),
                resendable=start is not None,
            )
        entry = FileEntry.from_json(self._client._json(resp))
        if p.sha256 is not None and entry.sha256 != p.sha256:
            raise IntegrityError(
                f"{p.path}: the server staged sha256 {entry.sha256}, the client sent {p.sha256}"
            )
        self.uploaded.append(p.path)
        self.uploaded_bytes += entry.size
        self._renewed_at = time.monotonic()  # a completed upload renews the lease
        return entry

    def remove_file(self, path: str) -> None:
        """Removes `path` from the transaction (a file of `from_version`, or one added
        earlier); `NotFoundError` when the transaction has no such file."""
        self._require_open()
        if self.replayed:
            assert self.manifest is not None
            if self.manifest.file(path) is not None:
                raise IdempotencyMismatchError(
                    f"idempotency key {self.idempotency_key} committed {self.repo}/{self.name}@{self.version} "
                    f"with {path}, which this run removes",
                    code="idempotency_mismatch",
                )
            self._removed.add(path)
            return
        try:
            self._client.request("DELETE", self._file_path(path), ok=(200, 204))
        except NotFoundError:
            # A resumed transaction may have lost the file in the first run already.
            if not (self.resumed and path not in self._staged):
                raise
        self._staged.pop(path, None)
        self._added.pop(path, None)
        self._removed.add(path)

    # --- idempotent re-runs -------------------------------------------------------------

    def _compare_with_committed(self, p: _Pending) -> FileEntry:
        """In a replayed transaction: the committed file at `p.path`, if it has the same
        bytes; otherwise the re-run is not the run that committed."""
        assert self.manifest is not None
        sha256 = p.sha256
        if sha256 is None and p.stream is not None:
            digest = hashlib.sha256()
            while chunk := p.stream.read(1 << 20):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        committed = self.manifest.file(p.path)
        if committed is None or committed.sha256 != sha256:
            what = "has no such file" if committed is None else f"holds sha256 {committed.sha256} there"
            raise IdempotencyMismatchError(
                f"idempotency key {self.idempotency_key} already committed {self.repo}/{self.name}@{self.version}, "
                f"which {what}; this run adds {p.path} with sha256 {sha256}. A re-run job must publish "
                f"the same content; use a new key for new content",
                code="idempotency_mismatch",
                body={"path": p.path, "committed": committed.sha256 if committed else None, "new": sha256},
            )
        self.already_stored.append(p.path)
        self._added[p.path] = committed
        return committed

    def _check_replay(self) -> None:
        """At the end of a replayed block: without `from_version`, the committed version must
        hold exactly the files this run added."""
        assert self.manifest is not None
        if self.from_version is not None:
            return
        extra = sorted({f.path for f in self.manifest.files} - set(self._added))
        if extra:
            raise IdempotencyMismatchError(
                f"idempotency key {self.idempotency_key} already committed {self.repo}/{self.name}@{self.version} "
                f"with files this run did not add: {', '.join(extra[:10])}"
                + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""),
                code="idempotency_mismatch",
                body={"only_existing": extra},
            )

    def _drop_leftovers(self) -> None:
        """Before committing a resumed transaction: the version must hold what this run
        added (over `from_version`'s files), not what the first run staged and this run no
        longer adds."""
        self.refresh()
        base: dict[str, FileEntry] = {}
        if self.from_version is not None:
            base = {f.path: f for f in self._client.manifest(self.repo, self.name, self.from_version).files}
        for path, entry in sorted(self._staged.items()):
            if path in self._added:
                continue
            original = base.get(path)
            if original is None or path in self._removed:
                log.info("dropping %s, staged by an earlier run of this transaction", path)
                self._client.request("DELETE", self._file_path(path), ok=(200, 204))
                self._staged.pop(path, None)
            elif original.sha256 != entry.sha256:
                self._staged[path] = self._put_by_digest(path, original.sha256)
        for path, original in sorted(base.items()):
            if path not in self._staged and path not in self._removed and path not in self._added:
                self._staged[path] = self._put_by_digest(path, original.sha256)


def _reconnecting(send: Any) -> Any:
    """`send()`, repeated when the connection failed before an answer arrived (status 0):
    only for requests that are safe to repeat."""
    for delay in RECONNECT_DELAYS:
        try:
            return send()
        except UnavailableError as e:
            if e.status != 0:
                raise
            log.warning("%s; trying again in %.1f s", e, delay)
            time.sleep(delay)
    return send()
