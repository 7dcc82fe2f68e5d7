"""Publishing through transactions against the real server: byte-exact round trips, sending
only what changed, aborts, idempotent re-runs, locks and conflicts."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import Server, write_tree
from intact import (
    ChecksumMismatchError,
    Client,
    ConflictError,
    IdempotencyMismatchError,
    IntegrityError,
    InvalidError,
    LockedError,
    NotFoundError,
    NotOpenError,
    farm_job_key,
)


def frames(count: int, salt: bytes = b"") -> dict[str, bytes]:
    return {
        f"frames/{i:04d}.exr": hashlib.sha256(salt + i.to_bytes(4, "big")).digest() * (50 + i % 7)
        for i in range(count)
    }


def test_a_tree_published_reads_back_byte_exact(client: Client, unique_name: str, tmp_path: Path) -> None:
    files = frames(20, salt=unique_name.encode())
    files["empty.txt"] = b""
    files["deep/a/b/c/notes.txt"] = b"hello\n"
    files["big.bin"] = os.urandom(3 * 1024 * 1024 + 17)  # more than one read chunk
    write_tree(tmp_path / "out", files)

    with client.transaction("renders", unique_name, metadata={"artist": "kim"}) as txn:
        added = txn.add_tree(tmp_path / "out", prefix="comp")
    assert len(added) == len(files)
    assert txn.state == "committed" and txn.created is True
    manifest = txn.manifest
    assert manifest is not None and manifest.version == "1"
    assert manifest.metadata == {"artist": "kim"}
    assert {f.path: f.sha256 for f in manifest.files} == {
        f"comp/{p}": hashlib.sha256(b).hexdigest() for p, b in files.items()
    }

    got = client.download_version("renders", unique_name, "1", tmp_path / "back")
    assert got.version == "1"
    for rel, data in files.items():
        assert (tmp_path / "back" / "comp" / rel).read_bytes() == data
    one = client.download("renders", unique_name, "1", "comp/big.bin", tmp_path / "one.bin")
    assert one.sha256 == hashlib.sha256(files["big.bin"]).hexdigest()
    assert (tmp_path / "one.bin").read_bytes() == files["big.bin"]
    assert client.manifest("renders", unique_name).version == "1"  # @latest
    assert [v.version for v in client.versions("renders", unique_name)] == ["1"]


def test_republishing_sends_only_the_changed_files(client: Client, unique_name: str, tmp_path: Path) -> None:
    files = frames(40, salt=unique_name.encode())
    out = write_tree(tmp_path / "out", files)
    with client.transaction("renders", unique_name) as first:
        first.add_tree(out)
    assert len(first.uploaded) == 40 and first.already_stored == []

    changed = ["frames/0003.exr", "frames/0017.exr", "frames/0031.exr"]
    for rel in changed:
        (out / rel).write_bytes(b"re-rendered " + rel.encode())
    with client.transaction("renders", unique_name) as second:
        second.add_tree(out)
    assert sorted(second.uploaded) == changed
    assert len(second.already_stored) == 37
    assert second.uploaded_bytes == sum(len(b"re-rendered " + r.encode()) for r in changed)
    assert second.manifest is not None and second.manifest.version == "2"
    client.download_version("renders", unique_name, "2", tmp_path / "back")
    for rel in files:
        assert (tmp_path / "back" / rel).read_bytes() == (out / rel).read_bytes()


def test_the_same_new_bytes_are_uploaded_once(client: Client, unique_name: str, tmp_path: Path) -> None:
    same = os.urandom(4096)
    out = write_tree(tmp_path / "out", {"a.bin": same, "b.bin": same, "c.bin": same})
    with client.transaction("renders", unique_name) as txn:
        txn.add_tree(out)
    assert txn.uploaded == ["a.bin"]
    assert txn.already_stored == ["b.bin", "c.bin"]


def test_file_objects_seekable_or_not(client: Client, unique_name: str, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as w:
            w.write(b"from a pipe")

    feeder = threading.Thread(target=feed)
    feeder.start()
    with client.transaction("renders", unique_name) as txn:
        buffer = io.BytesIO(b"skip-me" + data)
        buffer.seek(7)  # bytes are read from where the object stands
        txn.add_file("buffer.bin", buffer)
        with os.fdopen(read_end, "rb") as pipe:
            txn.add_file("pipe.txt", pipe)
    feeder.join()
    assert not buffer.closed  # the caller's object stays the caller's
    client.download_version("renders", unique_name, None, tmp_path / "back")
    assert (tmp_path / "back" / "buffer.bin").read_bytes() == data
    assert (tmp_path / "back" / "pipe.txt").read_bytes() == b"from a pipe"


def test_an_exception_in_the_block_aborts(client: Client, unique_name: str, tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", frames(3, salt=unique_name.encode()))
    txn = client.transaction("renders", unique_name, version="7")
    with pytest.raises(RuntimeError, match="render failed"):
        with txn:
            txn.add_tree(out)
            raise RuntimeError("render failed")
    assert txn.state == "aborted"
    with pytest.raises(NotFoundError):
        client.manifest("renders", unique_name, "7")
    assert client.get_json(f"/api/v1/transactions/{txn.id}")["state"] == "aborted"
    # The lock went with it: the same version can be published at once.
    with client.transaction("renders", unique_name, version="7") as again:
        again.add_tree(out)
    assert again.manifest is not None and again.manifest.version == "7"


def test_a_keyboard_interrupt_aborts_too(client: Client, unique_name: str) -> None:
    txn = client.transaction("renders", unique_name)
    with pytest.raises(KeyboardInterrupt):
        with txn:
            txn.add_file("a.txt", io.BytesIO(b"a"))
            raise KeyboardInterrupt
    assert txn.state == "aborted"
    assert client.get_json(f"/api/v1/transactions/{txn.id}")["state"] == "aborted"


def test_a_refused_commit_releases_the_version(client: Client, unique_name: str) -> None:
    with client.transaction("renders", unique_name, version="1") as txn:
        txn.add_file("a.txt", io.BytesIO(b"first"))
    other = client.transaction("renders", unique_name, version="1")
    with pytest.raises(ConflictError) as refused:
        with other:
            other.add_file("a.txt", io.BytesIO(b"second"))
    assert [c["path"] for c in refused.value.differences["changed"]] == ["a.txt"]
    assert refused.value.status == 409 and refused.value.code == "conflict"
    assert other.state == "aborted"
    # The version stays as it was, and is not locked by the refused transaction.
    assert client.manifest("renders", unique_name, "1").file("a.txt") == txn.manifest.file("a.txt")  # type: ignore[union-attr]
    with client.transaction("renders", unique_name, version="1") as same:
        same.add_file("a.txt", io.BytesIO(b"first"))
    assert same.created is False  # identical content: the existing version is the answer


def test_the_same_idempotency_key_gets_the_same_version(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    out = write_tree(tmp_path / "out", frames(5, salt=unique_name.encode()))
    key = farm_job_key(f"{unique_name}-8812", task=3)
    with client.transaction("renders", unique_name, idempotency_key=key) as first:
        first.add_tree(out)
    with client.transaction("renders", unique_name, idempotency_key=key) as rerun:
        rerun.add_tree(out)
    assert rerun.replayed and rerun.created is False
    assert rerun.manifest == first.manifest
    assert rerun.uploaded == [] and rerun.uploaded_bytes == 0
    assert [v.version for v in client.versions("renders", unique_name)] == ["1"]

    # A re-run that produced other bytes under the same key is refused, not published.
    (out / "frames/0002.exr").write_bytes(b"different")
    with pytest.raises(IdempotencyMismatchError, match="frames/0002.exr"):
        with client.transaction("renders", unique_name, idempotency_key=key) as bad:
            bad.add_tree(out)
    # So is one that leaves out a file the committed version has.
    (out / "frames/0002.exr").unlink()
    with pytest.raises(IdempotencyMismatchError, match="did not add: frames/0002.exr"):
        with client.transaction("renders", unique_name, idempotency_key=key) as fewer:
            fewer.add_tree(out)
    assert [v.version for v in client.versions("renders", unique_name)] == ["1"]


def test_a_job_that_died_mid_transaction_resumes_it(client: Client, unique_name: str, tmp_path: Path) -> None:
    key = f"farm-{unique_name}-died"
    out = write_tree(tmp_path / "out", frames(4, salt=unique_name.encode()))
    # The first run staged files, one of which the re-run no longer produces, then died
    # without committing or aborting (no `with`, no abort).
    dead = client.transaction("renders", unique_name, idempotency_key=key).begin()
    dead.add_tree(out)
    dead.add_file("scratch/tmp.bin", io.BytesIO(b"left over"))

    with client.transaction("renders", unique_name, idempotency_key=key) as rerun:
        rerun.add_tree(out)
    assert rerun.resumed and rerun.id == dead.id
    assert sorted(rerun.already_staged) == sorted(frames(4, salt=unique_name.encode()))
    assert rerun.uploaded == []
    assert rerun.manifest is not None
    assert sorted(f.path for f in rerun.manifest.files) == sorted(frames(4, salt=unique_name.encode()))


def test_a_second_transaction_on_an_open_version_is_locked(client: Client, unique_name: str) -> None:
    with client.transaction("renders", unique_name, version="3.0.0") as holder:
        holder.add_file("a.txt", io.BytesIO(b"a"))
        with pytest.raises(LockedError) as locked:
            with client.transaction("renders", unique_name, version="3.0.0"):
                pass
        assert locked.value.holder["id"] == holder.id
        assert locked.value.status == 409 and locked.value.code == "locked"


def test_waiting_for_a_lock_gets_it_once_the_holder_commits(server: Server, unique_name: str) -> None:
    started = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with server.client() as mine, mine.transaction("renders", unique_name, version="1") as txn:
            txn.add_file("a.txt", io.BytesIO(b"a"))
            started.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(30)
    with server.client() as other:
        waiting = other.transaction("renders", unique_name, version="1", wait_seconds=30)
        releaser = threading.Timer(0.3, release.set)
        releaser.start()
        with waiting:
            waiting.add_file("a.txt", io.BytesIO(b"a"))
    holder.join()
    assert waiting.created is False  # the holder committed the same bytes first


def test_renew_and_a_closed_transaction(client: Client, unique_name: str) -> None:
    with client.transaction("renders", unique_name, lease_seconds=60) as txn:
        before = txn.expires_at
        txn.renew()
        assert txn.expires_at is not None and before is not None and txn.expires_at >= before
        txn.add_file("a.txt", io.BytesIO(b"a"))
    with pytest.raises(NotOpenError):
        txn.add_file("b.txt", io.BytesIO(b"b"))
    with pytest.raises(NotOpenError):
        txn.abort()


def test_bad_names_and_paths_are_refused_by_the_server_not_rewritten(
    client: Client, unique_name: str
) -> None:
    # HTTP libraries drop literal `..` segments; the client must not publish `a/../b` as `b`.
    with pytest.raises(InvalidError) as bad_name:
        with client.transaction("renders", f"{unique_name}/../elsewhere"):
            pass
    assert bad_name.value.status == 400
    with pytest.raises(InvalidError) as bad_path:
        with client.transaction("renders", unique_name) as txn:
            txn.add_file("x/../../etc/passwd", io.BytesIO(b"nope"))
    assert bad_path.value.status == 400
    assert txn.state == "aborted"
    with pytest.raises(NotFoundError):
        client.manifest("renders", unique_name)


def test_a_declared_sha256_that_is_wrong_stages_nothing(client: Client, unique_name: str) -> None:
    with pytest.raises(ChecksumMismatchError) as wrong:
        with client.transaction("renders", unique_name) as txn:
            txn.add_file("a.txt", io.BytesIO(b"actual bytes"), sha256="0" * 64)
    assert wrong.value.status == 400 and wrong.value.code == "checksum_mismatch"
    assert txn.state == "aborted"


def test_a_file_changed_after_hashing_is_hashed_again(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    local = tmp_path / "frame.exr"
    local.write_bytes(b"as hashed")
    with client.transaction("renders", unique_name) as txn:
        pending = txn._prepare("frame.exr", local)
        local.write_bytes(b"rewritten by a late render step")
        txn._record(txn._upload(pending))
    assert txn.manifest is not None
    assert txn.manifest.files[0].sha256 == hashlib.sha256(b"rewritten by a late render step").hexdigest()


def test_downloads_check_bytes_and_stay_inside_the_destination(
    client: Client, unique_name: str, tmp_path: Path
) -> None:
    with client.transaction("renders", unique_name) as txn:
        txn.add_file("a.txt", io.BytesIO(b"right"))
    dest = tmp_path / "a.txt"
    dest.write_bytes(b"old")
    with pytest.raises(IntegrityError):
        client.download(
            "renders", unique_name, "1", "a.txt", dest, sha256=hashlib.sha256(b"wrong").hexdigest()
        )
    assert dest.read_bytes() == b"old"  # nothing half-written over the old file
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left behind
    # A symlink planted in the destination is not written through.
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "a.txt").symlink_to(outside / "victim")
    with pytest.raises(IntegrityError, match="symlink"):
        client.download_version("renders", unique_name, "1", tmp_path / "dest")
    assert not (outside / "victim").exists()


def test_a_server_that_is_down_raises_a_typed_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from intact import UnavailableError

    with pytest.raises(UnavailableError) as down:
        Client(f"http://127.0.0.1:{port}", timeout=5).manifest("renders", "x", "1")
    assert down.value.status == 0
    assert isinstance(down.value.__cause__, requests.RequestException)


def test_a_commit_whose_answer_was_lost_is_repeated_not_doubled(server: Server, unique_name: str) -> None:
    from cutting_proxy import CuttingProxy

    with CuttingProxy(server.url, b"/commit ") as proxy, Client(proxy.url, timeout=30) as c:
        with c.transaction("renders", unique_name) as txn:
            txn.add_file("a.txt", io.BytesIO(b"a"))
        assert proxy.cuts == 1
    assert txn.state == "committed"
    assert txn.manifest is not None and txn.manifest.version == "1"
    with server.client() as direct:
        assert [v.version for v in direct.versions("renders", unique_name)] == ["1"]


def test_an_open_whose_answer_was_lost_is_repeated_not_locked(server: Server, unique_name: str) -> None:
    from cutting_proxy import CuttingProxy

    # Without a key of the client's own, the repeated open of an explicit version would meet
    # the lost first transaction's lock (LockedError) until its lease ended.
    with CuttingProxy(server.url, b"/transactions HTTP/1.1") as proxy, Client(proxy.url, timeout=30) as c:
        with c.transaction("renders", unique_name, version="5") as txn:
            txn.add_file("a.txt", io.BytesIO(b"a"))
        assert proxy.cuts == 1
    assert txn.manifest is not None and txn.manifest.version == "5"
    assert not txn.resumed  # the caller gave no key: nothing of an earlier run to reconcile


def test_abort_inside_the_block_is_not_a_failure(client: Client, unique_name: str) -> None:
    with client.transaction("renders", unique_name) as txn:
        txn.add_file("a.txt", io.BytesIO(b"a"))
        txn.abort()
    assert txn.state == "aborted"
    with pytest.raises(NotFoundError):
        client.manifest("renders", unique_name)


def test_add_tree_skips_symlinks_and_lists_them(client: Client, unique_name: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not part of the render")
    out = write_tree(tmp_path / "out", {"a.exr": b"a"})
    (out / "link.txt").symlink_to(secret)
    (out / "linked-dir").symlink_to(tmp_path)
    with client.transaction("renders", unique_name) as txn:
        txn.add_tree(out)
    assert sorted(Path(p).name for p in txn.skipped) == ["link.txt", "linked-dir"]
    assert txn.manifest is not None and [f.path for f in txn.manifest.files] == ["a.exr"]


def test_manifest_paths_that_would_escape_are_refused(tmp_path: Path) -> None:
    from intact.client import _inside

    root = tmp_path.resolve()
    assert _inside(root, "a/b.txt") == root / "a" / "b.txt"
    for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "", "a\\..\\b", "a\0b"]:
        with pytest.raises(IntegrityError):
            _inside(root, bad)


def test_versions_are_listed_across_pages(client: Client, unique_name: str) -> None:
    for i in range(5):
        with client.transaction("renders", unique_name) as txn:
            txn.add_file("a.txt", io.BytesIO(b"v%d" % i))
    assert [v.version for v in client.versions("renders", unique_name, page_size=2)] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    assert all(v.files == 1 and v.size == 2 for v in client.versions("renders", unique_name))


def test_waiting_for_a_lock_longer_than_the_read_timeout(server: Server, unique_name: str) -> None:
    started = threading.Event()

    def hold() -> None:
        with server.client() as mine, mine.transaction("renders", unique_name, version="1") as txn:
            txn.add_file("a.txt", io.BytesIO(b"a"))
            started.set()
            time.sleep(9)  # longer than every repeat of a 1 s timeout would cover

    holder = threading.Thread(target=hold)
    holder.start()
    assert started.wait(30)
    with Client(server.url, timeout=1) as impatient:
        waiting = impatient.transaction("renders", unique_name, version="1", wait_seconds=60)
        with waiting:
            waiting.add_file("a.txt", io.BytesIO(b"a"))
    holder.join()
    assert waiting.created is False
