"""Where a large model's session time goes: ONNX Runtime's pre-packing of constant weights.

    .venv/bin/python bench/session_prepack.py [10MB|200MB|1GB] [--reps 2]

On ``tts_models.py``'s model of that size (one intra-op thread, as ``time_to_serve.py`` runs),
each in a fresh process so that one session's memory does not hide the next one's:

1. session creation with pre-packing (ONNX Runtime's default, and ours) and with
   ``session.disable_prepacking=1``: wall and CPU seconds and the memory it adds (USS), then the
   first inference (the runtime's warm-up makes one) and the memory added by then, with the
   process's anonymous memory (memory-mapped weights are file pages, not anonymous);
2. warm starts: a session from the original file, from the optimized graph saved as
   ``models/warm.py`` saves it, and from one saved with
   ``session.save_external_prepacked_constant_initializers`` (graph optimisation off for both
   saved graphs, as a warm start loads them);
3. one inference at batch 1, 8 and 32 with and without pre-packing (best of 5), and whether
   the outputs are equal.

Nothing here is a target; it is the evidence for bench/RESULTS.md's notes on a 1 GB start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tts_models

CPU = ["CPUExecutionProvider"]


def options(level: ort.GraphOptimizationLevel, **entries: str) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = level
    for key, value in entries.items():
        opts.add_session_config_entry(key, value)
    return opts


def create(model: str, disable_prepacking: str, optimize: str) -> None:
    """One session in this process; prints wall, CPU and added USS as JSON (``--child``)."""
    import psutil

    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimize == "off":
        level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts = options(level, **{"session.disable_prepacking": disable_prepacking})
    process = psutil.Process()
    before = process.memory_full_info().uss
    wall, cpu = time.perf_counter(), time.process_time()
    session = ort.InferenceSession(model, opts, providers=CPU)
    result = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "uss_mib": (process.memory_full_info().uss - before) / 2**20,
    }
    # The first run, as the runtime's warm-up makes one: without pre-packing, the memory-mapped
    # weights are read in here.
    name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    x = np.ones((1, shape[1]), np.float32)
    first = time.perf_counter()
    session.run(None, {name: x})
    result["first_run"] = time.perf_counter() - first
    info = process.memory_full_info()
    result["uss_after_mib"] = (info.uss - before) / 2**20
    result["anon_after_mib"] = _anonymous(process) / 2**20
    sys.stdout.write(json.dumps(result) + "\n")


def _anonymous(process: object) -> int:
    """Bytes of the process's anonymous memory (``RssAnon``): what the kernel cannot reclaim
    by dropping file pages, unlike the memory-mapped weights' pages."""
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():  # type: ignore[attr-defined]
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def in_child(model: Path, disable_prepacking: str = "0", optimize: str = "all") -> str:
    command = [sys.executable, __file__, "--child", str(model), disable_prepacking, optimize]
    found = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    return (
        f"session {found['wall']:.3f} s (CPU {found['cpu']:.3f} s, +{found['uss_mib']:.0f} MiB), "
        f"first run {found['first_run']:.3f} s, then +{found['uss_after_mib']:.0f} MiB "
        f"(anonymous {found['anon_after_mib']:.0f} MiB in all)"
    )


def save_graphs(model: Path, work: Path) -> dict[str, Path]:
    """The optimized graph saved as models/warm.py saves it, and with pre-packed weights."""
    saved = {}
    for name, extra in (("saved graph", {}), ("saved graph, pre-packed weights", {
        "session.save_external_prepacked_constant_initializers": "1"
    })):  # fmt: skip
        folder = work / name.replace(" ", "-").replace(",", "")
        folder.mkdir()
        opts = options(
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            **{
                "session.optimized_model_external_initializers_file_name": "model.onnx.data",
                "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
                **extra,
            },
        )
        opts.optimized_model_filepath = str(folder / "model.onnx")
        ort.InferenceSession(str(model), opts, providers=CPU)
        saved[name] = folder / "model.onnx"
    return saved


def infer_times(model: Path, hidden: int) -> None:
    runs: dict[int, list[tuple[float, np.ndarray]]] = {}
    for disable in ("0", "1"):
        opts = options(
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL, **{"session.disable_prepacking": disable}
        )
        session = ort.InferenceSession(str(model), opts, providers=CPU)
        name = session.get_inputs()[0].name
        for batch in (1, 8, 32):
            x = np.random.default_rng(0).standard_normal((batch, hidden)).astype(np.float32)
            session.run(None, {name: x})
            best, out = float("inf"), None
            for _ in range(5):
                start = time.perf_counter()
                out = session.run(None, {name: x})[0]
                best = min(best, time.perf_counter() - start)
            runs.setdefault(batch, []).append((best, out))
    for batch, ((packed, a), (unpacked, b)) in runs.items():
        print(  # noqa: T201
            f"batch {batch:2d}: pre-packed {packed * 1000:.1f} ms, not {unpacked * 1000:.1f} ms "
            f"({unpacked / packed:.2f}x), equal {np.array_equal(a, b)}, "
            f"largest difference {float(np.abs(a - b).max()):.2g}"
        )


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        create(*sys.argv[2:5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("size", choices=list(tts_models.SHAPES), nargs="?", default="1GB")
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    shape = tts_models.SHAPES[args.size]
    model = tts_models.build(shape)
    print(f"{args.size}: {model}, onnxruntime {ort.__version__}")  # noqa: T201
    with tempfile.TemporaryDirectory(prefix="prepack-") as tmp:
        saved = save_graphs(model, Path(tmp))
        for rep in range(args.reps):
            print(f"rep {rep + 1}")  # noqa: T201
            print(f"  {'original, pre-packing':32s}{in_child(model)}")  # noqa: T201
            print(f"  {'original, disable_prepacking':32s}{in_child(model, '1')}")  # noqa: T201
            for name, path in saved.items():
                print(f"  {name:32s}{in_child(path, '0', 'off')}")  # noqa: T201
    infer_times(model, shape.hidden)
    return 0


if __name__ == "__main__":
    sys.exit(main())
