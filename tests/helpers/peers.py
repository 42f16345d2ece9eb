"""Virtual environments for the peer servers the client is tested against (KServe's
ModelServer and MLServer), and for Triton's client the runtime is tested with, which cannot
share the dev venv (their pins clash with ours).

One table of pins, used by ``scripts/peers`` (which creates the venvs, idempotently, before
pytest runs) and by the tests (which start the servers from them). A venv lives in
``~/.cache/modelfleet/peers/<name>-<hash of its pins and Python version>/``: changing a pin
makes a new one, and an install that did not finish is started again from scratch.

    .venv/bin/python -m tests.helpers.peers [NAME ...]     (what scripts/peers runs)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PINS: dict[str, tuple[str, ...]] = {
    # The same pins as bench/run.sh, so the tests and the benchmark call the same servers.
    "kserve": ("kserve==0.21.*", "onnxruntime==1.31.*", "numpy"),
    "mlserver": ("mlserver==1.7.1", "uvloop==0.21.0", "onnxruntime==1.31.*", "numpy"),
    # Triton's client (HTTP and gRPC) for the runtime's TLS tests: its gRPC extra wants
    # protobuf 6, the runtime's generated modules protobuf 7.
    "tritonclient": ("tritonclient[http,grpc]==2.73.*", "numpy"),
}
ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelfleet" / "peers"
MARKER = ".modelfleet-installed"


def venv(name: str) -> Path:
    """Where ``name``'s venv lives (it may not exist yet)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(json.dumps([python, *PINS[name]]).encode()).hexdigest()[:12]
    return ROOT / f"{name}-{digest}"


def python(name: str) -> Path:
    """The interpreter of ``name``'s venv; fails with the command to run when it is missing."""
    path = venv(name)
    if not (path / MARKER).is_file():
        raise AssertionError(f"the {name} venv is missing ({path}): run scripts/peers")
    return path / "bin" / "python"


def ensure(name: str) -> Path:
    """Create ``name``'s venv unless a finished one is there; its path."""
    path = venv(name)
    if (path / MARKER).is_file():
        return path
    shutil.rmtree(path, ignore_errors=True)  # a half-made one from an interrupted run
    sys.stderr.write(f"creating {path} ({' '.join(PINS[name])})\n")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *PINS[name]], check=True)
    (path / MARKER).write_text(json.dumps(PINS[name]) + "\n")
    return path


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(PINS))
    if unknown:
        sys.stderr.write(f"unknown peers {unknown}; known: {sorted(PINS)}\n")
        return 2
    for name in names or sorted(PINS):
        ensure(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
