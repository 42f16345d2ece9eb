"""Parts for the model cache tests: a proxy that holds chosen GETs until the test lets them
through, and fetches run in separate processes (the claims are about processes sharing one
cache folder)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.helpers.waiting import wait_until

from .helpers import RecordingProxy

FETCH = """
import asyncio, json, logging, sys
from modelfleet_runtime.config import Settings
from modelfleet_runtime.storage import open_source

logging.basicConfig(level=logging.INFO, stream=sys.stderr)

async def main() -> None:
    settings = Settings(**json.loads(sys.argv[1]))
    source = open_source(settings)
    versions = await source.list_versions()
    path = await source.fetch(versions[int(sys.argv[2])])
    print("fetched", path, flush=True)
    if sys.argv[3] == "hold":
        await asyncio.to_thread(sys.stdin.read)  # holds the version until stdin closes

asyncio.run(main())
"""


class Fetcher:
    """``fetch`` of one version in a child process; ``hold`` keeps the version held (as a
    server that serves it) until ``close``."""

    def __init__(self, log: Path, settings: dict[str, Any], version: int, hold: bool) -> None:
        self.log = log
        values = json.dumps(settings, default=str)
        args = [sys.executable, "-c", FETCH, values, str(version), "hold" if hold else "exit"]
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )

    def path(self) -> Path:
        """The model.onnx the fetch returned (fails with the child's log if it failed)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("fetched "), self.log.read_text()
        return Path(line.split(" ", 1)[1].strip())

    def logged(self, text: str) -> bool:
        return text in self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


class GateProxy(RecordingProxy):
    """A ``RecordingProxy`` that lets the first ``pass_first`` GETs naming ``needle`` through
    and holds later ones until ``open_gate`` (each at most ``limit`` seconds)."""

    def __init__(
        self, target: tuple[str, int], needle: bytes, pass_first: int = 0, limit: float = 60
    ) -> None:
        self.needle, self.pass_first, self.limit = needle, pass_first, limit
        self.gate = threading.Event()
        self.held = 0
        self._matched = 0
        super().__init__(target)

    def open_gate(self) -> None:
        self.gate.set()

    def _admit(self, data: bytes) -> bool:
        if b"GET " in data and self.needle in data and not self._may_pass():
            return self.gate.wait(self.limit)
        return True

    def _may_pass(self) -> bool:
        with self._lock:
            self._matched += 1
            if self._matched <= self.pass_first or self.gate.is_set():
                return True
            self.held += 1
            return False

    def wait_held(self, count: int) -> None:
        wait_until(lambda: self.held >= count, 60, f"{count} GET(s) held at the proxy")
