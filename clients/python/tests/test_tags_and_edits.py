"""Tags (moved with `expect`, read through, their history) and versions made by editing
another (`from_version`), against the real server."""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest

from conftest import Server
from intact import (
    UNCONDITIONAL,
    Client,
    IdempotencyMismatchError,
    NotFoundError,
    TagMovedError,
)


def publish(client: Client, name: str, files: dict[str, bytes], version: str = "auto") -> str:
    with client.transaction("renders", name, version=version) as txn:
        for path, data in files.items():
            txn.add_file(path, io.BytesIO(data))
    assert txn.manifest is not None
    return txn.manifest.version


def test_tags_move_with_expect_and_read_through(client: Client, unique_name: str, tmp_path: Path) -> None:
    v1 = publish(client, unique_name, {"a.txt": b"one"})
    v2 = publish(client, unique_name, {"a.txt": b"two"})

    created = client.tag("renders", unique_name, "approved", v1, expect=None)
    assert (created.tag, created.version, created.previous) == ("approved", v1, None)
    with pytest.raises(TagMovedError) as exists:
        client.tag("renders", unique_name, "approved", v2, expect=None)
    assert exists.value.current == v1 and exists.value.status == 409

    moved = client.tag("renders", unique_name, "approved", v2, expect=v1)
    assert (moved.version, moved.previous) == (v2, v1)
    with pytest.raises(TagMovedError) as stale:
        client.tag("renders", unique_name, "approved", v1, expect=v1)
    assert stale.value.current == v2
    assert client.tag("renders", unique_name, "approved", v1, expect=UNCONDITIONAL).previous == v2

    assert client.get_tag("renders", unique_name, "approved").version == v1
    assert [t.tag for t in client.tags("renders", unique_name)] == ["approved"]
    history = client.tag_history("renders", unique_name, "approved")
    assert [(h.version, h.previous) for h in history] == [(v1, v2), (v2, v1), (v1, None)]

    through = client.manifest("renders", unique_name, tag="approved")
    assert through.version == v1
    client.download("renders", unique_name, None, "a.txt", tmp_path / "a.txt", tag="approved")
    assert (tmp_path / "a.txt").read_bytes() == b"one"
    got = client.download_version("renders", unique_name, None, tmp_path / "all", tag="approved")
    assert got.version == v1 and (tmp_path / "all" / "a.txt").read_bytes() == b"one"

    with pytest.raises(NotFoundError):
        client.tag("renders", unique_name, "approved", "999")
    with pytest.raises(TagMovedError):
        client.delete_tag("renders", unique_name, "approved", expect=v2)
    client.delete_tag("renders", unique_name, "approved", expect=v1)
    with pytest.raises(NotFoundError):
        client.get_tag("renders", unique_name, "approved")
    assert client.tag_history("renders", unique_name, "approved", limit=1)[0].version is None


def test_two_threads_race_to_move_a_tag_and_one_wins(server: Server, unique_name: str) -> None:
    with server.client() as c:
        base = publish(c, unique_name, {"a.txt": b"base"})
        candidates = [publish(c, unique_name, {"a.txt": f"take {i}".encode()}) for i in range(2)]
        c.tag("renders", unique_name, "live", base, expect=None)

    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def race(i: int) -> None:
        with server.client() as mine:
            barrier.wait()
            try:
                outcomes[i] = mine.tag("renders", unique_name, "live", candidates[i], expect=base)
            except TagMovedError as e:
                outcomes[i] = e

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    losers = [o for o in outcomes if isinstance(o, TagMovedError)]
    winners = [i for i, o in enumerate(outcomes) if not isinstance(o, TagMovedError)]
    assert len(losers) == 1 and len(winners) == 1, outcomes
    assert losers[0].current == candidates[winners[0]]
    with server.client() as c:
        assert c.get_tag("renders", unique_name, "live").version == candidates[winners[0]]


def test_a_version_made_by_editing_another(client: Client, unique_name: str, tmp_path: Path) -> None:
    files = {f"frames/{i:03d}.exr": f"frame {i}".encode() * 100 for i in range(10)}
    files["comp.nk"] = b"script v1"
    v1 = publish(client, unique_name, files)

    with client.transaction("renders", unique_name, from_version=v1, metadata={"note": "fix 004"}) as edit:
        edit.add_file("frames/004.exr", io.BytesIO(b"fixed frame 4"))
        edit.remove_file("comp.nk")
        edit.add_file("notes.txt", io.BytesIO(b"frame 4 fixed"))
    assert edit.uploaded == ["frames/004.exr", "notes.txt"]
    assert edit.manifest is not None and edit.manifest.version != v1
    expected = dict(files)
    expected["frames/004.exr"] = b"fixed frame 4"
    expected["notes.txt"] = b"frame 4 fixed"
    del expected["comp.nk"]
    assert {f.path: f.sha256 for f in edit.manifest.files} == {
        p: hashlib.sha256(b).hexdigest() for p, b in expected.items()
    }
    client.download_version("renders", unique_name, edit.manifest.version, tmp_path / "v2")
    assert sorted(
        str(p.relative_to(tmp_path / "v2")) for p in (tmp_path / "v2").rglob("*") if p.is_file()
    ) == sorted(expected)
    # The version edited is untouched.
    assert client.manifest("renders", unique_name, v1).file("comp.nk") is not None

    with pytest.raises(NotFoundError):
        with client.transaction("renders", unique_name, from_version=v1) as bad:
            bad.remove_file("no/such/file")
    assert bad.state == "aborted"


def test_an_edit_rerun_under_its_key(client: Client, unique_name: str) -> None:
    v1 = publish(client, unique_name, {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    key = f"edit-{unique_name}"

    def job(new_b: bytes) -> None:
        with client.transaction("renders", unique_name, from_version=v1, idempotency_key=key) as txn:
            txn.add_file("b.txt", io.BytesIO(new_b))
            txn.remove_file("c.txt")

    job(b"B")
    job(b"B")  # re-run: the same version
    assert [v.version for v in client.versions("renders", unique_name)] == [v1, "2"]
    with pytest.raises(IdempotencyMismatchError):
        job(b"other")


def test_an_edit_resumed_after_the_first_run_died(client: Client, unique_name: str) -> None:
    v1 = publish(client, unique_name, {"a.txt": b"a", "b.txt": b"b", "c.txt": b"c"})
    key = f"edit-{unique_name}"
    dead = client.transaction("renders", unique_name, from_version=v1, idempotency_key=key).begin()
    dead.add_file("a.txt", io.BytesIO(b"changed by a run that is not repeated"))
    dead.remove_file("c.txt")
    dead.add_file("junk.txt", io.BytesIO(b"junk"))

    with client.transaction("renders", unique_name, from_version=v1, idempotency_key=key) as rerun:
        rerun.add_file("b.txt", io.BytesIO(b"B"))
        rerun.remove_file("c.txt")  # removed by the first run already: fine on a resume
    assert rerun.resumed
    assert rerun.manifest is not None
    got = {f.path: f.sha256 for f in rerun.manifest.files}
    assert got == {
        "a.txt": hashlib.sha256(b"a").hexdigest(),  # restored to the version edited
        "b.txt": hashlib.sha256(b"B").hexdigest(),
    }
