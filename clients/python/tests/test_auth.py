"""A server that requires tokens: the client's token is sent and honoured; calls without one,
or with one lacking the scope, are refused with typed errors and do nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPOS, Server
from intact import AuthError, ForbiddenError, NotFoundError, UnauthorizedError


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    """A server with `[auth] required = true`, its admin token made with `intact token
    create` before the first start, and a read-only token made through the API."""
    srv = Server(tmp_path_factory.mktemp("intact-auth"), REPOS + "\n[auth]\nrequired = true\n")
    created = srv.cli("token", "create", "root", "--scope", "*:admin", "--config", str(srv.config_path))
    admin = created.strip().splitlines()[-1].strip()
    assert admin.startswith("intact_"), created
    srv.start()
    with srv.client(admin) as c:
        answer = c.request(
            "POST",
            "/api/v1/tokens",
            json={"name": "reader", "scopes": ["renders:read"]},
            ok=(201,),
        ).json()
    yield srv, admin, answer["secret"]
    srv.stop()


def test_a_token_with_the_scope_publishes_and_reads(secured: tuple[Server, str, str], tmp_path: Path) -> None:
    srv, admin, reader = secured
    with srv.client(admin) as c, c.transaction("renders", "secured/a") as txn:
        txn.add_file("a.txt", io.BytesIO(b"secret bytes"))
    with srv.client(reader) as c:
        c.download("renders", "secured/a", "1", "a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_bytes() == b"secret bytes"


def test_no_token_is_refused_with_401(secured: tuple[Server, str, str]) -> None:
    srv, _, _ = secured
    with srv.client() as anonymous:
        with pytest.raises(UnauthorizedError) as refused:
            with anonymous.transaction("renders", "secured/b"):
                pass
        assert refused.value.status == 401 and refused.value.code == "unauthorized"
        assert isinstance(refused.value, AuthError)
        with pytest.raises(UnauthorizedError):
            anonymous.manifest("renders", "secured/a", "1")
    with srv.client("intact_not-a-real-token") as wrong, pytest.raises(UnauthorizedError):
        wrong.manifest("renders", "secured/a", "1")


def test_a_token_without_the_scope_is_refused_with_403(secured: tuple[Server, str, str]) -> None:
    srv, admin, reader = secured
    with srv.client(reader) as c:
        with pytest.raises(ForbiddenError) as refused:
            with c.transaction("renders", "secured/c") as txn:
                txn.add_file("a.txt", io.BytesIO(b"not allowed"))
        assert refused.value.status == 403 and refused.value.code == "forbidden"
    with srv.client(admin) as c, pytest.raises(NotFoundError):
        c.manifest("renders", "secured/c")
