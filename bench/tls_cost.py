"""TLS's cost on the HTTP port: req/s and server CPU per request with and without TLS, in one
interleaved run.

    .venv/bin/python bench/tls_cost.py [--reps 3] [--duration 5]

Needs the dev venv (scripts/setup: it builds the models with onnx and the certificate with
cryptography) and Debian's wrk. For each model, two ``modelfleet serve`` of this checkout
with the same flags, pinned to CPU 0 (``taskset``): one plain, one with ``--tls-cert-file``
and ``--tls-key-file`` (an ECDSA P-256 certificate from a private CA made here, by
tests/helpers/tls.py). wrk runs on CPU 1 (over https, through OpenSSL, without checking the
certificate). Scenarios:

- ``small``: MLP-small 64->256->256->10, batch 1, JSON (about 1 KB each way), kept-alive
  connections: the per-request cost of TLS records, the handshake amortised;
- ``conv``: the 1x3x224x224 FP32 image, binary tensor extension (602 KB in), kept-alive: the
  per-byte cost of encryption;
- ``small, new connection``: "Connection: close", so every request pays a TCP connect and a
  TLS handshake (a full one unless wrk resumes a session).

Each answer is checked once (TLS and plain give the same outputs) before timing. Repetitions
are interleaved (every scenario plain then TLS, the order flipped every other repetition);
the table shows medians and the ratio TLS / plain. Prints a Markdown table for
bench/RESULTS.md; raw trials go to bench/.work/tls/trials.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import launch
import models
from load import Body, require_wrk, run_wrk

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work" / "tls"
FLAGS = ("--intra-op-threads", "1", "--inter-op-threads", "1", "--log-level", "WARNING")
SCENARIOS = [  # label, model, connections, new connection per request
    ("small", "mlp_small", 1, False),
    ("small", "mlp_small", 16, False),
    ("conv binary", "conv", 4, False),
    ("small, new connection", "mlp_small", 4, True),
]


def make_certificate() -> tuple[Path, Path, Path]:
    sys.path.insert(0, str(REPO))
    from tests.helpers.tls import make_tls

    tls = make_tls(WORK / "pki", "tls_cost bench CA")
    return tls.ca, tls.cert, tls.key


def bodies(built: dict[str, models.BenchModel]) -> dict[str, Body]:
    small = WORK / "small.json"
    small.write_bytes(models.json_body(models.request_input(built["mlp_small"])))
    conv, length = models.binary_body(models.request_input(built["conv"]))
    (WORK / "conv.bin").write_bytes(conv)
    binary = "application/octet-stream"
    return {"mlp_small": Body(small), "conv": Body(WORK / "conv.bin", binary, length)}


def start(model: models.BenchModel, port: int, tls: tuple[str, ...]) -> launch.Server:
    label = f"{model.name}-{'tls' if tls else 'plain'}"
    command = [
        "taskset", "-c", "0", str(REPO / ".venv/bin/modelfleet"), "serve",
        "--model-uri", str(model.path), "--name", model.name, "--port", str(port),
        "--grpc-port", "0", "--poll-interval", "0", "--model-dir", str(WORK / "models" / label),
        *FLAGS, *tls,
    ]  # fmt: skip
    log = WORK / f"{label}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return launch.Server(label, "ours", model.name, port, process, log)


def url(server: launch.Server, tls: bool) -> str:
    return server.url.replace("http://", "https://") if tls else server.url


def answer(server: launch.Server, tls: bool, body: Body, ca: Path) -> Any:
    """The server's answer to ``body`` once it is ready (after at most 120 s)."""
    headers = {"content-type": body.content_type}
    if body.header_length is not None:
        headers["inference-header-content-length"] = str(body.header_length)
    deadline = time.monotonic() + 120
    while True:
        try:
            done = httpx.post(
                url(server, tls), content=body.path.read_bytes(), headers=headers,
                verify=str(ca) if tls else True, timeout=10,
            )  # fmt: skip
            if done.status_code == 200:
                return done.json()["outputs"]
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.process.poll() is not None:
            raise RuntimeError(f"{server.label} did not answer: {server.log.read_text()[-2000:]}")
        time.sleep(0.2)


def trial(
    server: launch.Server, tls: bool, body: Body, conns: int, close: bool, seconds: float
) -> dict[str, float]:
    """One wrk trial, with the server's CPU time per request."""
    before = launch.cpu_seconds(server)
    stats = run_wrk(url(server, tls), body, conns, seconds, close=close)
    stats["cpu_us_per_req"] = (launch.cpu_seconds(server) - before) / stats["requests"] * 1e6
    return stats


def run(reps: int, seconds: float) -> list[dict[str, Any]]:
    WORK.mkdir(parents=True, exist_ok=True)
    require_wrk()
    built = models.build(WORK)
    ca, cert, key = make_certificate()
    tls_flags = ("--tls-cert-file", str(cert), "--tls-key-file", str(key))
    body = bodies(built)
    servers: dict[tuple[str, bool], launch.Server] = {}
    try:
        for index, name in enumerate(("mlp_small", "conv")):
            servers[name, False] = start(built[name], 18700 + 2 * index, ())
            servers[name, True] = start(built[name], 18701 + 2 * index, tls_flags)
        for name in ("mlp_small", "conv"):
            plain = answer(servers[name, False], False, body[name], ca)
            assert answer(servers[name, True], True, body[name], ca) == plain, name
        trials: list[dict[str, Any]] = []
        for rep in range(reps):
            for label, name, conns, close in SCENARIOS:
                for tls in (False, True) if rep % 2 == 0 else (True, False):
                    stats = trial(servers[name, tls], tls, body[name], conns, close, seconds)
                    trials.append({"scenario": label, "conns": conns, "tls": tls, **stats})
                    sys.stderr.write(
                        f"rep {rep} {label} c={conns} tls={tls}: {stats['rps']:.0f} req/s, "
                        f"{stats['cpu_us_per_req']:.0f} CPU us/req, {stats['errors']:.0f} errors\n"
                    )
        return trials
    finally:
        for server in servers.values():
            launch.stop(server)


def table(trials: list[dict[str, Any]]) -> str:
    rows = [
        "| Scenario | Conns | req/s plain | req/s TLS | req/s TLS/plain | CPU µs/req plain "
        "| CPU µs/req TLS | CPU TLS/plain | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, _, conns, _ in SCENARIOS:
        mine = [t for t in trials if (t["scenario"], t["conns"]) == (label, conns)]
        rps = [statistics.median(t["rps"] for t in mine if t["tls"] == tls) for tls in (0, 1)]
        cpu = [
            statistics.median(t["cpu_us_per_req"] for t in mine if t["tls"] == tls)
            for tls in (0, 1)
        ]
        errors = sum(t["errors"] for t in mine)
        rows.append(
            f"| {label} | {conns} | {rps[0]:,.0f} | {rps[1]:,.0f} | {rps[1] / rps[0]:.2f}× "
            f"| {cpu[0]:,.0f} | {cpu[1]:,.0f} | {cpu[1] / cpu[0]:.2f}× | {errors:.0f} |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per trial")
    args = parser.parse_args()
    trials = run(args.reps, args.duration)
    (WORK / "trials.json").write_text(json.dumps(trials, indent=1))
    load = os.getloadavg()[0]
    sys.stdout.write(f"{table(trials)}\n(1-minute load average at the end: {load:.1f})\n")


if __name__ == "__main__":
    main()
