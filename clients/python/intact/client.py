"""The client: one HTTP session to an intact server, reads, tags and transactions."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union

import requests

from .errors import IntactError, IntegrityError, UnavailableError, error_for
from .models import FileEntry, Manifest, Tag, TagMove, VersionInfo
from ._util import CHUNK_BYTES, MISSING_BATCH, PathLike, segment, segments
from .transaction import Transaction

__all__ = ["Client", "UNCONDITIONAL", "farm_job_key"]

# Attempts for a request the server refused as "not now" (429, 503 busy/unavailable), which
# it promises did nothing; every other failure is raised at once.
RETRY_ATTEMPTS = 4
RETRY_MAX_SLEEP_SECONDS = 30.0


class _Unconditional:
    """The type of `UNCONDITIONAL`."""

    _instance: Optional["_Unconditional"] = None

    def __new__(cls) -> "_Unconditional":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCONDITIONAL"


UNCONDITIONAL = _Unconditional()
"""`expect` for `Client.tag` meaning "move the tag wherever it points now". `expect=None`
instead means "only if the tag does not exist yet"."""


def farm_job_key(job_id: Union[str, int], task: Union[str, int, None] = None) -> str:
    """The idempotency key of a render-farm job (and task): `farm-<job>` or
    `farm-<job>-<task>`. A re-run of the job with the same key gets the version the first run
    committed, never a second one."""
    key = f"farm-{job_id}" if task is None else f"farm-{job_id}-{task}"
    if not key.isascii() or not key.isprintable() or " " in key:
        raise ValueError(f"idempotency key {key!r} must be visible ASCII without spaces")
    return key


class Client:
    """An intact server at `url` (e.g. `http://127.0.0.1:7333`).

    `token` is sent as `Authorization: Bearer`; `timeout` is the seconds to wait for the
    server to connect and then for each read (not for a whole transfer). A client holds one
    `requests.Session`: give each thread its own client.
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"server url {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # The environment's proxy settings are read once here, not on every request (which
        # cost more than the request itself when publishing thousands of small files);
        # `.netrc` is not consulted: the token is the credential.
        self._session.proxies.update(requests.utils.get_environ_proxies(self.url))
        self._session.trust_env = False
        self._session.headers["User-Agent"] = "intact-python/0.1"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_env(cls, timeout: float = 60.0) -> "Client":
        """A client for `$INTACT_URL` (default `http://127.0.0.1:7333`) with `$INTACT_TOKEN`."""
        return cls(
            os.environ.get("INTACT_URL", "http://127.0.0.1:7333"),
            token=os.environ.get("INTACT_TOKEN") or None,
            timeout=timeout,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- HTTP ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: Optional[Callable[[], Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, Any]] = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200, 201, 204),
        resendable: bool = True,
        close_body: bool = False,
        timeout: Optional[float] = None,
    ) -> requests.Response:
        """Sends one request to the API and returns the answer when its status is in `ok`,
        else raises the typed error. `body`, when given, makes the request body afresh for
        each attempt (a file reopened), so a request the server refused as "not now" (429,
        503), having done nothing, is sent again after `Retry-After`; `resendable=False` says
        the body cannot be made twice (a stream already read); `close_body=True` closes what
        `body` made after each attempt (a file the client opened, never the caller's);
        `timeout` replaces the client's for a request the server may hold on purpose."""
        url = self.url + path
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            data = body() if body is not None else None
            try:
                resp = self._session.request(
                    method,
                    url,
                    json=json,
                    data=data,
                    headers=dict(headers or {}),
                    params=params,
                    stream=stream,
                    timeout=self.timeout if timeout is None else timeout,
                )
            except requests.RequestException as e:
                raise UnavailableError(f"{method} {url}: {e}") from e
            finally:
                close = getattr(data, "close", None)
                if close_body and callable(close):
                    close()
            if resp.status_code in ok:
                return resp
            error = self._error(method, url, resp)
            retry_after = _retry_after(resp)
            if (
                attempt < RETRY_ATTEMPTS
                and resendable
                and resp.status_code in (429, 503)
                and error.code in ("rate_limited", "busy", "unavailable")
            ):
                time.sleep(retry_after if retry_after is not None else 0.5 * attempt)
                continue
            raise error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _error(self, method: str, url: str, resp: requests.Response) -> IntactError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {}
            fallback = f"{method} {url} answered {resp.status_code}: {resp.text[:500].strip()}"
        else:
            fallback = f"{method} {url} answered {resp.status_code}"
        resp.close()
        return error_for(resp.status_code, body, fallback)

    def _json(self, resp: requests.Response) -> Mapping[str, Any]:
        try:
            data = resp.json()
        except ValueError as e:
            raise IntactError(
                f"{resp.request.method} {resp.url}: the answer is not JSON", status=resp.status_code
            ) from e
        if not isinstance(data, dict):
            raise IntactError(
                f"{resp.request.method} {resp.url}: the answer is not a JSON object", status=resp.status_code
            )
        return data

    def get_json(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Mapping[str, Any]:
        return self._json(self.request("GET", path, params=params))

    # --- publishing ---------------------------------------------------------------------

    def transaction(
        self,
        repo: str,
        name: str,
        version: str = "auto",
        metadata: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        from_version: Optional[str] = None,
        lease_seconds: Optional[int] = None,
        wait_seconds: Optional[int] = None,
    ) -> Transaction:
        """A transaction publishing one version, to use as a context manager:

            with client.transaction("renders", "shots/010/comp", idempotency_key=farm_job_key(job)) as txn:
                txn.add_tree("out/")
            print(txn.manifest.version)

        It opens on entering the block, commits when the block ends normally and aborts
        (then re-raises) when anything is raised inside it. `from_version` starts from that
        version's files (replace with `add_file`, drop with `remove_file`). `wait_seconds`
        waits up to that long for another transaction holding the version instead of raising
        `LockedError` at once."""
        return Transaction(
            self,
            repo=repo,
            name=name,
            version=version,
            metadata=dict(metadata) if metadata is not None else None,
            idempotency_key=idempotency_key,
            from_version=from_version,
            lease_seconds=lease_seconds,
            wait_seconds=wait_seconds,
        )

    def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """The sha256 digests (hex) among `digests` whose bytes the server does not hold for
        this caller: one request per 10,000."""
        unique = list(dict.fromkeys(d.lower() for d in digests))
        missing: set[str] = set()
        for start in range(0, len(unique), MISSING_BATCH):
            batch = unique[start : start + MISSING_BATCH]
            answer = self._json(self.request("POST", "/api/v1/blobs/missing", json={"digests": batch}))
            listed = answer.get("missing")
            if not isinstance(listed, list):
                raise IntactError("POST /api/v1/blobs/missing: the answer has no `missing` list")
            missing.update(d for d in listed if isinstance(d, str))
        return missing

    # --- reads --------------------------------------------------------------------------

    def _name_path(self, repo: str, name: str) -> str:
        return f"/api/v1/repos/{segment(repo)}/{segments(name)}"

    def manifest(
        self, repo: str, name: str, version: Optional[str] = None, *, tag: Optional[str] = None
    ) -> Manifest:
        """A version's manifest: by `version`, by `tag`, or the newest commit when neither
        is given (or `version="latest"`)."""
        base = self._name_path(repo, name)
        if tag is not None:
            if version is not None:
                raise ValueError("give a version or a tag, not both")
            path = f"{base}/@t/{segment(tag)}"
        elif version is None or version.lower() == "latest":
            path = f"{base}/@latest"
        else:
            path = f"{base}/@v/{segment(version)}"
        return Manifest.from_json(self.get_json(path))

    def versions(self, repo: str, name: str, page_size: int = 1000) -> Iterator[VersionInfo]:
        """Every committed version of a name, oldest first (paged as the server pages)."""
        after: Optional[str] = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if after is not None:
                params["after"] = after
            page = self.get_json(f"{self._name_path(repo, name)}/@versions", params)
            listed = page.get("versions")
            for item in listed if isinstance(listed, list) else []:
                if isinstance(item, dict):
                    yield VersionInfo.from_json(item)
            cursor = page.get("next")
            if cursor is None or cursor == "" or cursor == after:
                return
            after = str(cursor)

    def download(
        self,
        repo: str,
        name: str,
        version: Optional[str],
        path: str,
        dest: PathLike,
        *,
        tag: Optional[str] = None,
        sha256: Optional[str] = None,
    ) -> FileEntry:
        """Downloads one file of a version (or of the version `tag` points at) to `dest`,
        streaming and checking its sha256 (the server's `x-checksum-sha256`, and `sha256` when
        given). `dest` appears only complete and checked: the bytes go to a temporary file
        beside it, renamed into place."""
        base = self._name_path(repo, name)
        if tag is not None:
            if version is not None:
                raise ValueError("give a version or a tag, not both")
            url_path = f"{base}/@t/{segment(tag)}/{segments(path)}"
        elif version is None:
            raise ValueError("give a version or a tag")
        else:
            url_path = f"{base}/@v/{segment(version)}/{segments(path)}"
        resp = self.request("GET", url_path, stream=True, ok=(200,))
        with resp:
            promised = (resp.headers.get("x-checksum-sha256") or "").strip().lower()
            expected = (sha256 or "").lower()
            if expected and promised and expected != promised:
                raise IntegrityError(
                    f"{path}: the server serves sha256 {promised}, the manifest says {expected}"
                )
            expected = expected or promised
            if not expected:
                raise IntegrityError(f"{path}: the server sent no x-checksum-sha256 to check against")
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            size = 0
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    try:
                        for chunk in resp.iter_content(CHUNK_BYTES):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                    except requests.RequestException as e:
                        raise UnavailableError(f"GET {url_path}: the body broke off: {e}") from e
                    out.flush()
                    os.fsync(out.fileno())
                    # mkstemp makes the file private (0600); a download reads like any file.
                    os.fchmod(out.fileno(), 0o644)
                got = digest.hexdigest()
                if got != expected:
                    raise IntegrityError(
                        f"{path}: received {size} bytes hashing to {got}, expected {expected}; nothing was written"
                    )
                os.replace(tmp, dest)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        return FileEntry(path=path, size=size, sha256=expected)

    def download_version(
        self,
        repo: str,
        name: str,
        version: Optional[str],
        dest_dir: PathLike,
        *,
        tag: Optional[str] = None,
    ) -> Manifest:
        """Downloads every file of a version (by `version`, by `tag`, or the newest when both
        are None) under `dest_dir`, each checked against the manifest's sha256. A tag is
        resolved once: every file comes from the one version it pointed at then."""
        manifest = self.manifest(repo, name, version, tag=tag)
        root = Path(dest_dir).resolve()
        for entry in manifest.files:
            target = _inside(root, entry.path)
            self.download(repo, name, manifest.version, entry.path, target, sha256=entry.sha256)
        return manifest

    # --- tags ---------------------------------------------------------------------------

    def _tag_path(self, repo: str, name: str, tag: str) -> str:
        return f"{self._name_path(repo, name)}/@tags/{segment(tag)}"

    def tag(
        self,
        repo: str,
        name: str,
        tag: str,
        version: str,
        expect: Union[str, None, _Unconditional] = UNCONDITIONAL,
    ) -> Tag:
        """Points `tag` at `version`. `expect="12"` moves it only if it points at 12 now,
        `expect=None` only if it does not exist yet, `UNCONDITIONAL` (the default) wherever it
        points; otherwise `TagMovedError` (its `current` says where it points). The answer's
        `previous` is where it pointed before."""
        body: dict[str, Any] = {"version": version}
        if not isinstance(expect, _Unconditional):
            body["expect"] = expect
        resp = self.request("PUT", self._tag_path(repo, name, tag), json=body, ok=(200, 201))
        return Tag.from_json(self._json(resp))

    def get_tag(self, repo: str, name: str, tag: str) -> Tag:
        """Where `tag` points (`NotFoundError` when it does not exist)."""
        return Tag.from_json(self.get_json(self._tag_path(repo, name, tag)))

    def tags(self, repo: str, name: str) -> list[Tag]:
        """Every tag of a name."""
        listed = self.get_json(f"{self._name_path(repo, name)}/@tags").get("tags")
        return [Tag.from_json(t) for t in listed if isinstance(t, dict)] if isinstance(listed, list) else []

    def tag_history(self, repo: str, name: str, tag: str, limit: Optional[int] = None) -> list[TagMove]:
        """The moves of a tag, newest first (all of them, or the newest `limit`)."""
        moves: list[TagMove] = []
        params: dict[str, Any] = {}
        while limit is None or len(moves) < limit:
            page = self.get_json(f"{self._tag_path(repo, name, tag)}/@history", params)
            listed = page.get("history")
            if isinstance(listed, list):
                moves.extend(TagMove.from_json(m) for m in listed if isinstance(m, dict))
            before = page.get("next_before")
            if not isinstance(before, int) or isinstance(before, bool) or before == params.get("before"):
                break
            params["before"] = before
        return moves if limit is None else moves[:limit]

    def delete_tag(
        self, repo: str, name: str, tag: str, expect: Union[str, _Unconditional] = UNCONDITIONAL
    ) -> None:
        """Removes a tag (`NotFoundError` when it does not exist; with `expect`,
        `TagMovedError` unless it points at that version). Its history stays."""
        params = None if isinstance(expect, _Unconditional) else {"expect": expect}
        self.request("DELETE", self._tag_path(repo, name, tag), params=params, ok=(200, 204))


def _inside(root: Path, path: str) -> Path:
    """`root/path` for a path from a manifest, refusing any that would land outside `root`
    (absolute, `..`, empty segments, backslashes, or through a symlink already there)."""
    parts = path.split("/")
    if not path or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise IntegrityError(f"the manifest names {path!r}, which is no safe relative path")
    target = root.joinpath(*parts)
    resolved_parent = target.parent.resolve()
    if resolved_parent != root and root not in resolved_parent.parents:
        raise IntegrityError(f"{path!r} would be written outside {root}")
    if target.is_symlink():
        raise IntegrityError(f"{target} is a symlink; refusing to write through it")
    return target


def _retry_after(resp: requests.Response) -> Optional[float]:
    value = resp.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or seconds < 0:
        return None
    return min(seconds, RETRY_MAX_SLEEP_SECONDS)
