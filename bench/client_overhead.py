"""Per-call client overhead: our client (modelfleet_client) against tritonclient, on the same
ModelFleet server, over HTTP and gRPC.

    .venv/bin/python bench/client_overhead.py [--reps 5] [--calls 2000] [--write]

Needs the dev venv (scripts/setup; it builds the models with onnx and runs the servers). On
first use it creates two venvs under bench/.work/venvs/ (each client in its own: tritonclient
pins protobuf < 7, our grpc extra needs 7, and both register the protocol's ``inference.*``
messages, which one process cannot hold twice): ``client-ours`` with ``-e ./client[grpc]``
(editable: a run measures the working tree), ``client-triton`` with ``tritonclient[all]``.

Two models, each on its own ``modelfleet serve`` pinned to CPU 0 (``taskset``): ``tiny``
(``y = x + 1`` on a 1x4 FP32 tensor: batch 1, where the client's fixed cost is all there is)
and ``image`` (the identity on 1x3x224x224 FP32, 602 KB each way). Each measurement is a
worker process pinned to CPU 1 that makes ``--calls`` sequential calls (after a warm-up, the
answer checked once) and reports the median and p90 wall time per call and its own CPU time
per call (``time.process_time``: the client's cost, whatever the server does). Both clients
ask for the output as binary over HTTP (tritonclient: ``binary_data=True``) and build their
request from the numpy array on every call. Repetitions are interleaved (every client and
transport, then again), and the ratios compare medians taken in the same run.

``--write`` replaces the "Client overhead" section of bench/RESULTS.md.
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

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work" / "client"
VENVS = BENCH / ".work" / "venvs"
CLIENTS = {"ours": ["-e", "./client[grpc]"], "triton": ["tritonclient[all]"]}
"""Each client's pip arguments; ours is editable, so that a run measures the working tree."""
MODELS = {"tiny": ([1, 4], 2000), "image": ([1, 3, 224, 224], 300)}
"""Model -> (input shape, calls per measurement at --calls 2000)."""
SECTION = "## Client overhead"


# --- worker: runs in a client's venv ---------------------------------------------------------


def worker(client: str, transport: str, url: str, model: str, calls: int) -> dict[str, Any]:
    import numpy as np

    shape = MODELS[model][0]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = x + 1 if model == "tiny" else x
    call = _ours(url, model, x) if client == "ours" else _triton(transport, url, model, x)
    np.testing.assert_allclose(call(), expected, rtol=1e-6)
    for _ in range(max(20, calls // 10)):
        call()
    times = []
    cpu = time.process_time()
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    cpu_us = (time.process_time() - cpu) / calls * 1e6
    times.sort()
    return {
        "median_us": times[len(times) // 2] / 1e3,
        "p90_us": times[int(len(times) * 0.9)] / 1e3,
        "cpu_us": cpu_us,
    }


def _ours(url: str, model: str, x: Any) -> Any:
    from modelfleet_client import Client

    client = Client(url)
    return lambda: client.infer(model, {"x": x}, outputs=["y"])["y"]


def _triton(transport: str, url: str, model: str, x: Any) -> Any:
    if transport == "http":
        import tritonclient.http as triton
    else:
        import tritonclient.grpc as triton  # type: ignore[no-redef]
    client = triton.InferenceServerClient(url.split("://", 1)[1])
    binary = {"binary_data": True} if transport == "http" else {}
    wanted = [triton.InferRequestedOutput("y", **binary)]

    def call() -> Any:
        tensor = triton.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, **binary)
        return client.infer(model, [tensor], outputs=wanted).as_numpy("y")

    return call


# --- driver: runs in the dev venv ------------------------------------------------------------


def ensure_venvs() -> None:
    for name, packages in CLIENTS.items():
        venv = VENVS / f"client-{name}"
        if (venv / ".installed").exists():
            continue
        sys.stderr.write(f"creating {venv}\n")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", *packages]
        subprocess.run(pip, check=True, cwd=REPO)
        (venv / ".installed").touch()


def build_models() -> dict[str, Path]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folders = {}
    for name, (shape, _) in MODELS.items():
        dims: list[int | str] = ["batch", *shape[1:]]
        if name == "tiny":
            one = numpy_helper.from_array(np.ones(shape[1:], np.float32), "one")
            nodes, inits = [helper.make_node("Add", ["x", "one"], ["y"])], [one]
        else:
            nodes, inits = [helper.make_node("Identity", ["x"], ["y"])], []
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
            initializer=inits,
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 9
        folder = WORK / "models" / name / "1"
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, folder / "model.onnx")
        folders[name] = folder.parent
    return folders


def start_servers(folders: dict[str, Path]) -> tuple[list[subprocess.Popen[bytes]], dict[str, Any]]:
    sys.path.insert(0, str(REPO))
    from tests.helpers.runtime import free_port
    from tests.helpers.waiting import http_status, wait_until

    processes, urls = [], {}
    for name, folder in folders.items():
        http, grpc = free_port(), free_port()
        command = [
            "taskset", "-c", "0", str(REPO / ".venv/bin/modelfleet"), "serve",
            "--model-uri", str(folder), "--name", name, "--port", str(http),
            "--grpc-port", str(grpc), "--log-level", "WARNING", "--intra-op-threads", "1",
            "--inter-op-threads", "1", "--poll-interval", "0",
            "--model-dir", str(WORK / "cache" / name),
        ]  # fmt: skip
        log = (WORK / f"serve-{name}.log").open("wb")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        urls[name] = {"http": f"http://127.0.0.1:{http}", "grpc": f"grpc://127.0.0.1:{grpc}"}
        ready = f"http://127.0.0.1:{http}/v2/health/ready"
        wait_until(lambda url=ready: http_status(url) == 200, 60, f"the {name} server")
    return processes, urls


def measure(client: str, transport: str, url: str, model: str, calls: int) -> dict[str, Any]:
    python = VENVS / f"client-{client}" / "bin/python"
    args = [client, transport, url, model, str(calls)]
    command = ["taskset", "-c", "1", str(python), str(Path(__file__)), "--worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=WORK)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(reps: int, calls: int) -> dict[str, dict[str, list[dict[str, Any]]]]:
    ensure_venvs()
    processes, urls = start_servers(build_models())
    trials: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for rep in range(reps):
            for model, (_, per) in MODELS.items():
                for transport in ("http", "grpc"):
                    for client in CLIENTS if rep % 2 == 0 else reversed(CLIENTS):
                        n = max(50, per * calls // 2000)
                        found = measure(client, transport, urls[model][transport], model, n)
                        key = f"{model}/{transport}"
                        trials.setdefault(key, {}).setdefault(client, []).append(found)
                        sys.stderr.write(f"rep {rep + 1} {key} {client}: {found}\n")
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
    return trials


def table(trials: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    rows = [
        "| Model | Transport | ours median µs | tritonclient median µs | ours p90 µs "
        "| tritonclient p90 µs | ours CPU µs/call | tritonclient CPU µs/call | wall: triton/ours "
        "| CPU: triton/ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, by_client in trials.items():
        model, transport = key.split("/")
        med = {
            c: {k: statistics.median(t[k] for t in ts) for k in ts[0]}
            for c, ts in by_client.items()
        }
        ours, triton = med["ours"], med["triton"]
        rows.append(
            f"| {model} | {transport} | {ours['median_us']:,.0f} | {triton['median_us']:,.0f} "
            f"| {ours['p90_us']:,.0f} | {triton['p90_us']:,.0f} | {ours['cpu_us']:,.0f} "
            f"| {triton['cpu_us']:,.0f} | {triton['median_us'] / ours['median_us']:.2f}× "
            f"| {triton['cpu_us'] / ours['cpu_us']:.2f}× |"
        )
    return rows


def versions() -> str:
    found = []
    for client, dist in (("ours", "modelfleet-client"), ("triton", "tritonclient")):
        python = VENVS / f"client-{client}" / "bin/python"
        code = f"import importlib.metadata as m; print(m.version({dist!r}))"
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        found.append(f"{dist} {done.stdout.strip()}")
    return ", ".join(found)


def write(rows: list[str], reps: int, calls: int) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = [
        SECTION,
        "",
        f"Produced by `.venv/bin/python bench/client_overhead.py --reps {reps} --calls {calls}` "
        f"on {when} ({os.cpu_count()} CPUs), at commit {commit}; {versions()}.",
        "",
        "One `modelfleet serve` per model on CPU 0, each client in its own process and venv on "
        "CPU 1 (`taskset`), sequential calls on one reused connection, both clients asking "
        "for binary outputs over HTTP and building the request from the array on every call. "
        f"Medians of {reps} interleaved repetitions; tiny: {calls} calls each, image: "
        f"{max(50, 300 * calls // 2000)}. Wall time includes the server's (the same for both); "
        "CPU is the client process's own. Ratios above 1 mean ours is faster.",
        "",
        *rows,
        "",
    ]
    path = BENCH / "RESULTS.md"
    text = path.read_text()
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section)
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(section) + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per tiny measurement")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--worker", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        client, transport, url, model, calls = args.worker
        sys.stdout.write(json.dumps(worker(client, transport, url, model, int(calls))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    trials = run(args.reps, args.calls)
    (WORK / "trials.json").write_text(json.dumps(trials, indent=1))
    rows = table(trials)
    sys.stdout.write("\n".join(rows) + "\n")
    if args.write:
        write(rows, args.reps, args.calls)


if __name__ == "__main__":
    main()
