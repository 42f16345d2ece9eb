"""Time to serve: from a process start to the first 200 infer, for generated models of about
10 MB, 200 MB and 1 GB (``tts_models.py``) on a real S3 server (SeaweedFS) on loopback.

    .venv/bin/python bench/time_to_serve.py [--sizes 10MB 200MB 1GB] [--reps 3] [--write]
                                            [--cache-row] [--local-row] [--prepack-row]
                                            [--no-kserve]
                                            [--baseline REV]

Per size, interleaved (the order rotates each repeat), N repeats, median and spread:

- ours: ``modelfleet serve --model-uri s3://tts/SIZE`` (.venv) from ``Popen`` to the first 200
  of a V2 infer; its ``modelfleet_model_start_phase_seconds`` are scraped after that.
- limit: ``servers/limit_fetch_load.py`` in a fresh process (.venv): one listing, the same
  bytes in parallel ranged GETs (same part size and concurrency as ours), ONNX Runtime
  imported while they download, the session created from the local file; nothing else. Ends
  at its "session created" stamp.
- kserve: KServe's path, as a pod runs it: its storage initializer (``Storage.download`` in a
  fresh process, ``servers/kserve_download.py``), then its ModelServer
  (``servers/kserve_onnx.py``) to the first 200. KServe 0.21 from ``scripts/peers kserve``.
- ours, cache (``--cache-row``): a second start with ``--cache-dir`` after a first one filled
  it, where the runtime has that setting.
- ours, local file (``--local-row``): ``--model-uri`` the model's local folder (model.onnx
  and its external data; nothing to download or verify: imports, session, warm-up); with
  ``--prepack-row``, the same with ``--prepack-weights false`` too.

With ``--baseline REV``, ours at commit REV too, in every row ours has.

Interpreter start counts on every side. Every model is pushed with ``modelfleet models push``
(so ours verifies the manifest's sha256 of every file, as in production); every server runs
ONNX Runtime with one intra-op thread, unpinned (two cores: downloads and imports overlap).
The script takes ``/tmp/modelfleet-seaweed.lock`` itself (SeaweedFS's ports are fixed).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tts_models

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = Path(os.environ.get("TTS_VENV", REPO / ".venv")) / "bin"
"""Where ``modelfleet``, ``python`` (with boto3 and ONNX Runtime) and ``weed`` come from."""
S3 = "http://127.0.0.1:8333"
BUCKET = "tts"
LOCK = Path("/tmp/modelfleet-seaweed.lock")
POLL = 0.02
"""Seconds between infer polls (the resolution of every "to first 200" figure)."""
ENV = {
    "AWS_ACCESS_KEY_ID": "tts-key",
    "AWS_SECRET_ACCESS_KEY": "tts-secret",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
STORAGE_INITIALIZER = "kserve-storage==0.21.*"
"""The pin of KServe's storage initializer: the same release as the ModelServer."""
KSERVE_ENV = {"AWS_ENDPOINT_URL": S3, "S3_ENDPOINT": "127.0.0.1:8333", "S3_USE_HTTPS": "0"}


def kserve_python() -> Path:
    """KServe's ModelServer venv, the one the client tests use (``scripts/peers kserve``)."""
    sys.path.insert(0, str(REPO))
    from tests.helpers import peers

    return peers.python("kserve")


def storage_initializer_python() -> Path:
    """A venv with KServe's storage initializer (``kserve-storage``, its own image in KServe
    0.21), made once under bench/.work/venvs/ as ``bench/run.sh`` makes the others."""
    venv = HERE / ".work" / "venvs" / "kserve-storage"
    if not (venv / ".installed").is_file():
        print(f"creating {venv}", flush=True)  # noqa: T201
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, STORAGE_INITIALIZER], check=True)
        (venv / ".installed").touch()
    return venv / "bin" / "python"


@contextlib.contextmanager
def seaweed(work: Path) -> Iterator[None]:
    """``weed mini`` on its fixed ports, under the shared lock."""
    with LOCK.open("a") as lock:
        print(f"waiting for {LOCK}", flush=True)  # noqa: T201
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = work / "seaweed"
        data.mkdir()
        command = [
            str(VENV / "weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false",
        ]  # fmt: skip
        log = (work / "weed.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        try:
            client = s3_client()
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.list_buckets()
                    break
                except Exception:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            yield
        finally:
            _stop(process)


def s3_client() -> object:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=S3,
        region_name="us-east-1",
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
    )


def push_models(shapes: list[tts_models.Shape]) -> None:
    s3_client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    for shape in shapes:
        model = tts_models.build(shape)
        command = [str(VENV / "modelfleet"), "models", "push", str(model),
                   f"s3://{BUCKET}/{shape.label}", "--s3-endpoint-url", S3,
                   "--s3-addressing-style", "path"]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV, **env},
            start_new_session=True,
        )  # fmt: skip


def first_200(process: subprocess.Popen[bytes], port: int, body: bytes, log: Path) -> float:
    """Poll a V2 infer until it answers 200; the monotonic time it did."""
    url = f"http://127.0.0.1:{port}/v2/models/tts/infer"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()[-2000:]}")
        request = urllib.request.Request(url, body, {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(POLL)
    raise RuntimeError(f"no 200 from {url} in 600 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far, every thread."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def baseline_runtime(rev: str, work: Path) -> Path:
    """The runtime package of commit ``rev`` (``git archive``), for ``--baseline``: run with
    PYTHONPATH at it, the same venv serves that commit's code."""
    folder = work / f"baseline-{rev}"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "runtime"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "runtime"


def run_ours(
    shape: tts_models.Shape,
    work: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    uri: str | None = None,
) -> dict[str, float]:
    """``modelfleet serve`` of ``uri`` (default: the model in S3) to its first 200."""
    port = _free_port()
    command = [
        str(VENV / "modelfleet"), "serve", "--model-uri", uri or f"s3://{BUCKET}/{shape.label}",
        "--name", "tts", "--port", str(port), "--grpc-port", "0", "--poll-interval", "0",
        "--s3-endpoint-url", S3, "--s3-addressing-style", "path", "--intra-op-threads", "1",
        "--inter-op-threads", "1", "--model-dir", str(work / "ours-models"), *flags,
    ]  # fmt: skip
    log = work / "ours.log"
    started = time.monotonic()
    process = _spawn(command, log, env or {})
    try:
        seconds = first_200(process, port, tts_models.infer_body(shape), log) - started
        result = {"total": seconds, "cpu": cpu_seconds(process.pid), **_phases(port)}
    finally:
        _stop(process)
        shutil.rmtree(work / "ours-models", ignore_errors=True)
    return result


def _phases(port: int) -> dict[str, float]:
    """Our start phases, from our own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    phases = {}
    for line in text.splitlines():
        if line.startswith("modelfleet_model_start_phase_seconds{"):
            labels, value = line.rsplit(" ", 1)
            phase = labels.split('phase="', 1)[1].split('"', 1)[0]
            phases[phase] = float(value)
    return phases


def run_limit(shape: tts_models.Shape, work: Path) -> dict[str, float]:
    dest = work / "limit"
    command = [str(VENV / "python"), str(HERE / "servers/limit_fetch_load.py"), S3, BUCKET,
               f"{shape.label}/1", str(dest)]  # fmt: skip
    started = time.monotonic()
    try:
        out = subprocess.run(
            command, check=True, capture_output=True, env={**os.environ, **ENV}
        ).stdout
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    stamps = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "total": stamps["session"] - started,
        "cpu": stamps["cpu"],
        "imports": stamps["imported_boto3"] - started,
        "download": stamps["downloaded"] - stamps["imported_boto3"],
        "session": stamps["session"] - max(stamps["downloaded"], stamps["imported_ort"]),
    }


def run_kserve(shape: tts_models.Shape, work: Path) -> dict[str, float]:
    python = str(kserve_python())
    dest, port, log = work / "kserve-model", _free_port(), work / "kserve.log"
    started = time.monotonic()
    download = [str(storage_initializer_python()), str(HERE / "servers/kserve_download.py"),
                f"s3://{BUCKET}/{shape.label}/1", str(dest)]  # fmt: skip
    before = os.times()
    subprocess.run(download, check=True, env={**os.environ, **ENV, **KSERVE_ENV},
                   stdout=subprocess.DEVNULL, stderr=log.open("ab"))  # fmt: skip
    downloaded, after = time.monotonic(), os.times()
    download_cpu = after.children_user + after.children_system
    download_cpu -= before.children_user + before.children_system
    server = [python, str(HERE / "servers/kserve_onnx.py"), "--http_port", str(port),
              "--grpc_port", str(_free_port()), "--enable_grpc", "false",
              "--enable_latency_logging", "false", "--configure_logging", "false"]  # fmt: skip
    env = {"BENCH_MODEL_NAME": "tts", "BENCH_MODEL_PATH": str(dest / "model.onnx")}
    process = _spawn(server, log, env)
    try:
        done = first_200(process, port, tts_models.infer_body(shape), log)
        cpu = download_cpu + cpu_seconds(process.pid)
    finally:
        _stop(process)
        shutil.rmtree(dest, ignore_errors=True)
    return {
        "total": done - started,
        "cpu": cpu,
        "download": downloaded - started,
        "server": done - downloaded,
    }


def has_cache_dir() -> bool:
    """Whether our runtime has the model cache setting (issue 13's cache branch)."""
    help_text = subprocess.run(
        [str(VENV / "modelfleet"), "serve", "--help"], capture_output=True, text=True
    ).stdout
    return "--cache-dir" in help_text


def run_ours_cached(
    shape: tts_models.Shape, work: Path, env: dict[str, str] | None = None
) -> dict[str, float]:
    """A second start from a cache a first start filled (the first is not timed)."""
    cache = work / "cache"
    try:
        run_ours(shape, work, "--cache-dir", str(cache), env=env)
        return run_ours(shape, work, "--cache-dir", str(cache), env=env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def run_ours_local(
    shape: tts_models.Shape, work: Path, *flags: str, env: dict[str, str] | None = None
) -> dict[str, float]:
    """A start from the model's local folder (a laptop's ``modelfleet serve ./model``, or a
    volume mounted in the pod): files hard-linked, nothing downloaded or verified."""
    return run_ours(shape, work, *flags, env=env, uri=str(tts_models.build(shape).parent))


def ours_runners(
    label: str, work: Path, env: dict[str, str] | None
) -> dict[str, Callable[[tts_models.Shape], dict[str, float]]]:
    """Every row of our runtime under ``label`` (``ours`` or ``ours@REV``), run with ``env``."""
    no_prepack = ("--prepack-weights", "false")
    return {
        label: lambda s: run_ours(s, work, env=env),
        f"{label}, cache": lambda s: run_ours_cached(s, work, env=env),
        f"{label}, local file": lambda s: run_ours_local(s, work, env=env),
        f"{label}, local file, no pre-packing": lambda s: run_ours_local(
            s, work, *no_prepack, env=env
        ),
    }


def measure(
    shapes: list[tts_models.Shape], sides: list[str], reps: int, work: Path, baseline: str | None
) -> dict[tuple[str, str], list[dict[str, float]]]:
    runners: dict[str, Callable[[tts_models.Shape], dict[str, float]]] = {
        "limit": lambda s: run_limit(s, work),
        "kserve": lambda s: run_kserve(s, work),
    }
    runners |= ours_runners("ours", work, None)
    if baseline is not None:  # the same rows at commit REV
        old = {"PYTHONPATH": str(baseline_runtime(baseline, work))}
        runners |= ours_runners(f"ours@{baseline}", work, old)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rep in range(reps):
        for shape in shapes:
            order = sides[rep % len(sides) :] + sides[: rep % len(sides)]
            for side in order:
                result = runners[side](shape)
                results.setdefault((shape.label, side), []).append(result)
                print(f"rep {rep + 1} {shape.label:>5} {side:<11} {json.dumps(result)}", flush=True)  # noqa: T201
    return results


def _cell(runs: list[dict[str, float]], key: str = "total") -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(
    shapes: list[tts_models.Shape],
    sides: list[str],
    results: dict[tuple[str, str], list[dict[str, float]]],
) -> str:
    head = ["model", *[f"{side} s" for side in sides], "ours / limit", "kserve / limit"]
    head += [f"{side} CPU s" for side in sides]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in shapes:
        cells = [f"{shape.label} ({shape.nbytes / 1e6:.0f} MB)"]
        cells += [_cell(results.get((shape.label, side), [])) for side in sides]
        medians = {
            side: statistics.median(r["total"] for r in results[(shape.label, side)])
            for side in sides
        }
        for side in ("ours", "kserve"):
            ok = side in medians and "limit" in medians
            cells.append(f"{medians[side] / medians['limit']:.2f}x" if ok else "-")
        cells += [_cell(results.get((shape.label, side), []), "cpu") for side in sides]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def phases(
    shapes: list[tts_models.Shape],
    sides: list[str],
    results: dict[tuple[str, str], list[dict[str, float]]],
) -> str:
    """Medians of each side's phases: ours from its metrics, the others from their stamps."""
    lines = ["| model | side | phases, median s |", "|---|---|---|"]
    for shape in shapes:
        for side in sides:
            runs = results.get((shape.label, side))
            if not runs:
                continue
            keys = [k for k in runs[0] if k not in ("total", "cpu")]
            text = ", ".join(
                f"{k} {statistics.median(r.get(k, 0.0) for r in runs):.2f}" for k in keys
            )
            lines.append(f"| {shape.label} | {side} | {text} |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    """Replace the generated block of bench/RESULTS.md's "Time to serve" section."""
    results = HERE / "RESULTS.md"
    begin, end = "<!-- time_to_serve:begin -->", "<!-- time_to_serve:end -->"
    current = results.read_text()
    block = f"{begin}\n{text}\n{end}"
    if begin in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + f"\n\n## Time to serve\n\n{block}\n"
    results.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(tts_models.SHAPES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-kserve", action="store_true", help="leave KServe's path out")
    parser.add_argument("--cache-row", action="store_true", help="add ours from a warm cache")
    parser.add_argument("--local-row", action="store_true", help="add ours from a local folder")
    parser.add_argument(
        "--prepack-row",
        action="store_true",
        help="add the local start with --prepack-weights false",
    )
    parser.add_argument("--write", action="store_true", help="write the tables to RESULTS.md")
    parser.add_argument("--baseline", metavar="REV", help="add ours at commit REV (before/after)")
    args = parser.parse_args()
    shapes = [tts_models.SHAPES[s] for s in args.sizes]
    sides = ["ours", "limit"] + ([] if args.no_kserve else ["kserve"])
    if args.cache_row:
        if not has_cache_dir():
            print("--cache-row: this runtime has no --cache-dir setting yet", file=sys.stderr)  # noqa: T201
            return 2
        sides.append("ours, cache")
    if args.local_row:
        sides.append("ours, local file")
    if args.prepack_row:
        sides.append("ours, local file, no pre-packing")
    if args.baseline:  # the baseline in every row ours has
        sides += [f"ours@{args.baseline}{side[4:]}" for side in sides if side.startswith("ours")]
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp, seaweed(Path(tmp)):
        push_models(shapes)
        results = measure(shapes, sides, args.reps, Path(tmp), args.baseline)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = (
        f"{when}, commit {commit}, {args.reps} interleaved repeats, median (min-max), seconds "
        f"from process start to the first 200 (the limit: to its session created); "
        f"`nproc` {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at the end.\n\n"
        f"{table(shapes, sides, results)}\n\n{phases(shapes, sides, results)}"
    )
    print(text)  # noqa: T201
    if args.write:
        write_results(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
