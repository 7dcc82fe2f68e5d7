"""Starts the real `intact serve` (the binary in $INTACT_BIN, default the repo's
target/debug/intact, built with cargo when missing) on a free loopback port over a temporary
data dir, and hands tests a client for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))  # the package from this checkout, installed or not

from intact import Client  # noqa: E402

# Repos every test server serves; rate limits off for loopback so bursts of small requests
# are not throttled (the limits have their own tests in the Rust suite).
REPOS = """
[[repo]]
name = "renders"
kind = "hosted"
format = "generic"

[[repo]]
name = "files"
kind = "hosted"
format = "generic"

[limits]
rate_exempt_loopback = true
"""


def intact_bin() -> Path:
    configured = os.environ.get("INTACT_BIN")
    if configured:
        path = Path(configured)
        if not path.is_file():
            pytest.exit(f"INTACT_BIN={configured} is not a file", returncode=2)
        return path
    path = REPO_ROOT / "target" / "debug" / "intact"
    if not path.is_file():
        cargo = shutil.which("cargo")
        if cargo is None:
            pytest.exit(f"{path} is missing and cargo is not installed to build it", returncode=2)
        subprocess.run([cargo, "build", "-p", "intact", "--locked"], cwd=REPO_ROOT, check=True)
    return path


class Server:
    """One `intact serve` child process."""

    def __init__(self, workdir: Path, config: str, token_setup: Optional[list[str]] = None) -> None:
        self.bin = intact_bin()
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "intact.toml"
        self.config_path.write_text(f'data_dir = "{self.data_dir}"\n{config}')
        self.log_path = workdir / "server.log"
        self.url = ""
        self._proc: Optional[subprocess.Popen[bytes]] = None

    def cli(self, *args: str) -> str:
        """Runs the `intact` CLI on this server's configuration; its standard output."""
        done = subprocess.run(
            [str(self.bin), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "INTACT_LOG": "warn"},
        )
        if done.returncode != 0:
            raise AssertionError(f"intact {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def start(self) -> "Server":
        log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [str(self.bin), "serve", "--listen", "127.0.0.1:0", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "INTACT_LOG": "info"},
        )
        log.close()
        assert self._proc.stdout is not None
        first: list[bytes] = []
        got_line = threading.Event()
        stdout = self._proc.stdout

        def drain() -> None:
            first.append(stdout.readline())
            got_line.set()
            # Keep reading so the server never blocks on a full pipe.
            for _ in stdout:
                pass

        threading.Thread(target=drain, daemon=True).start()
        if not got_line.wait(60) or not first[0]:
            self.stop()
            raise AssertionError(f"intact did not start; log:\n{self.log_path.read_text()}")
        # "intact listening on http://127.0.0.1:PORT (...)"
        words = first[0].decode().split()
        self.url = next((w for w in words if w.startswith("http://")), "")
        assert self.url, f"unexpected first line {first[0]!r}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"intact at {self.url} never became ready; log:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def client(self, token: Optional[str] = None) -> Client:
        return Client(self.url, token=token, timeout=30)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An open server (no tokens: every local client may do everything)."""
    srv = Server(tmp_path_factory.mktemp("intact"), REPOS).start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test publishes under."""
    return f"tests/{request.node.name.replace('[', '-').replace(']', '')}".lower()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
