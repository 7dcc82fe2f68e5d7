"""The README's render-farm example, run as a farm would run it: as a script, with the job's
environment, against the real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import HERE, Server, write_tree

README = HERE.parent / "README.md"


def farm_example() -> str:
    text = README.read_text()
    found = re.search(r"<!-- example: farm-job -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its farm-job example"
    return found.group(1)


def run_job(server: Server, script: Path, job_id: str, shot: str, output: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "INTACT_URL": server.url,
        "FARM_JOB_ID": job_id,
        "SHOT": shot,
        "FARM_OUTPUT_DIR": str(output),
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("INTACT_TOKEN", None)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


def test_the_farm_job_example_runs_and_retries_into_the_same_version(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "publish_job.py"
    script.write_text(farm_example())
    shot = "readme/shots/010/comp"
    output = write_tree(
        tmp_path / "render",
        {f"{i:04d}.exr": f"frame {i} ".encode() * 1000 for i in range(1, 31)},
    )

    first = run_job(server, script, "8812", shot, output)
    assert first == {"version": "1", "created": True, "uploaded": 30, "already_stored": 0}
    # The farm runs the same job again: the same version, nothing sent.
    retry = run_job(server, script, "8812", shot, output)
    assert retry == {"version": "1", "created": False, "uploaded": 0, "already_stored": 30}

    # The next job re-rendered two frames: a new version, only those two uploaded.
    (output / "0007.exr").write_bytes(b"re-rendered 7")
    (output / "0019.exr").write_bytes(b"re-rendered 19")
    second = run_job(server, script, "8813", shot, output)
    assert second == {"version": "2", "created": True, "uploaded": 2, "already_stored": 28}

    with server.client() as c:
        assert c.get_tag("renders", shot, "dailies").version == "2"
        manifest = c.manifest("renders", shot, "2")
        assert manifest.metadata == {"farm_job": "8813"}
        assert manifest.file("frames/0007.exr") is not None
        c.download("renders", shot, "2", "frames/0019.exr", tmp_path / "19.exr")
        assert (tmp_path / "19.exr").read_bytes() == b"re-rendered 19"
