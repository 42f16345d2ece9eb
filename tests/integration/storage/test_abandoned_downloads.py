"""Download folders of a killed process are removed by the next fetch; a live one's never.

A second Python process holds a download's lock the way ``fetch`` does; SIGKILL is how a pod's
container dies on OOM, and its emptyDir (the model cache) survives into the restart.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from modelfleet_runtime.storage import open_source
from modelfleet_runtime.storage.locks import sweep_abandoned
from tests.helpers.onnx_models import add_constant, write_repository

from .helpers import settings

HOLDER = """
import sys, time
from pathlib import Path
from modelfleet_runtime.storage.locks import held
with held(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def half_written(base: Path, name: str) -> Path:
    """A download folder as a process killed mid-download leaves it."""
    tmp = base / name
    (tmp / "1").mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(b"\0" * 4096)
    return tmp


def hold(lock: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_killed_writers_folder_goes_and_a_live_writers_stays(tmp_path: Path) -> None:
    base = tmp_path / "models" / "iris"
    live = half_written(base, ".tmp-2-live")
    dead = half_written(base, ".tmp-1-dead")
    live_writer, dead_writer = hold(base / ".tmp-2-live.lock"), hold(base / ".tmp-1-dead.lock")
    try:
        assert sweep_abandoned(base) == []  # both writers alive: nothing touched
        dead_writer.send_signal(signal.SIGKILL)
        dead_writer.wait(timeout=10)
        assert sweep_abandoned(base) == [dead]
        assert not dead.exists() and not (base / ".tmp-1-dead.lock").exists()
        assert (live / "model.onnx").stat().st_size == 4096
    finally:
        for writer in (live_writer, dead_writer):
            writer.kill()
            writer.wait(timeout=10)
            assert writer.stdout is not None
            writer.stdout.close()
    assert sweep_abandoned(base) == [live]  # its writer is gone now too


async def test_the_next_fetch_sweeps_and_leaves_only_the_version(tmp_path: Path) -> None:
    repo = write_repository(tmp_path / "repo", {1: add_constant(1.0)})
    source = open_source(settings(tmp_path, str(repo), model_name="iris"))
    versions = await source.list_versions()
    first = await source.fetch(versions[1])
    base = first.parent.parent
    dead = half_written(base, ".tmp-1-crashed")
    (base / ".tmp-1-crashed.lock").touch()  # its writer died holding it: no holder now
    first.parent.rename(base / "moved")  # so that the fetch downloads again
    path = await source.fetch(versions[1])
    assert path.read_bytes() == (repo / "1" / "model.onnx").read_bytes()
    assert not dead.exists()
    assert sorted(p.name for p in base.iterdir()) == sorted(["moved", path.parent.name])
