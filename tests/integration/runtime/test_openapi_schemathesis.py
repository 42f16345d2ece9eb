"""The OpenAPI document tells the truth: schemathesis, with all its default checks, against
``modelfleet serve`` (the bundled iris model) as a real uvicorn process on 127.0.0.1. A
schema-valid request the server refuses, a schema-violating one it serves, an undocumented
status, content type or response shape, a 500, or a schema schemathesis cannot use fails it.

Two bounded, derandomized runs (``--generation-deterministic``, fixed ``--max-examples``):

- the examples and coverage phases in both modes: the document's own examples, then every
  boundary and every violation of every field, one at a time. ``schemathesis_hooks`` applies
  the one rule of an inference body JSON Schema cannot state (product(shape) elements) to the
  positive cases.
- the fuzzing and stateful phases (random bodies, chains of calls through the links
  schemathesis infers, e.g. the repository index's model name into /v2/models/{name}/infer)
  in negative mode: schema-violating requests must be refused. In positive mode these phases
  would need the same rule, and schemathesis 4.32 does not pass every fuzzed case through
  ``map_case`` (a positive fuzzing case reached the server unhooked): they stay out rather
  than fail on a rule the document states in words.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.runtime import serve_process

ST = str(Path(sys.executable).with_name("st"))
BOUNDED = ["--max-examples", "25", "--generation-deterministic", "--workers", "1", "--no-color"]
RUNS = {
    "examples and coverage, both modes": ["--phases", "examples,coverage"],
    "fuzzing and stateful, negative mode": ["--phases", "fuzzing,stateful", "--mode", "negative"],
}
ROOT = Path(__file__).resolve().parents[3]


def schemathesis(url: str, tmp: Path, extra: list[str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.runtime.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    command = [ST, "run", f"{url}/openapi.json", *BOUNDED, *extra]
    return subprocess.run(
        command, cwd=tmp, env=env, capture_output=True, text=True, timeout=150, check=False
    )


def served_by_the_model(metrics: str) -> int:
    """Inference requests that iris answered with 200 (so schemathesis reached the model)."""
    pattern = r'modelfleet_requests_total\{model="iris",[^}]*status="200"[^}]*\} (\d+)'
    return sum(int(float(n)) for n in re.findall(pattern, metrics))


@pytest.mark.timeout(400)
def test_schemathesis_finds_no_failure_and_no_error(tmp_path: Path) -> None:
    with serve_process(tmp_path, "--grpc-port", "0") as served:
        for name, extra in RUNS.items():
            run = schemathesis(served.url, tmp_path, extra)
            report = run.stdout + run.stderr
            assert run.returncode == 0, f"{name}:\n{report[-6000:]}"
            assert "No issues found" in report, f"{name}:\n{report[-6000:]}"
        metrics = httpx.get(f"{served.url}/metrics").text
    # Not all 404s: generated requests went through the model and were served.
    assert served_by_the_model(metrics) > 10, metrics
