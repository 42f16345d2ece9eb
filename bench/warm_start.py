"""Warm starts: ONNX Runtime session creation from the original model (graph optimisation at
level ``all``) against creation from the optimized graph saved in the model cache
(``optimized_model_cache``), on a model whose optimisation takes long.

    .venv/bin/python bench/warm_start.py [--reps 7] [--blocks 300]

The model (built here with onnx.helper, nothing downloaded) is ``blocks`` layers of
``relu(x @ transpose(A_i @ B_i) + b_i)``, each with a chain of constant ops on its bias
(``((b * 2) + 1) / 2 - 0.5``): constant folding computes every ``A_i @ B_i`` and bias chain, and
the MatMul + Add pairs fuse. It goes through the real cache (a ``file://`` repository fetched into
``cache_dir``), and each timing is ``models.warm.create_session`` as ``OnnxModel.load`` calls it:

- cold: from the original, no graph saved (``optimized_model_cache`` off);
- first: from the original, saving the optimized graph (the first start with the cache);
- warm: from the saved graph with optimisation off, its digests checked first.

The three kinds interleave (cold, first, warm, cold, ...), medians shown; each "first" saves into
an empty options folder. One intra-op thread, like the benches' servers. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from modelfleet_runtime.config import Settings
from modelfleet_runtime.models import warm
from modelfleet_runtime.models.onnx import session_options
from modelfleet_runtime.storage import open_source

SIZE = 128


def slow_to_optimize(blocks: int, path: Path) -> None:
    """Write the model the module docstring describes to ``path/1/model.onnx``."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "input0"
    for i in range(blocks):
        for name in (f"a{i}", f"b{i}"):
            weights = (rng.standard_normal((SIZE, SIZE)) / SIZE).astype(np.float32)
            inits.append(numpy_helper.from_array(weights, name))
        bias = rng.standard_normal(SIZE).astype(np.float32)
        inits.append(numpy_helper.from_array(bias, f"bias{i}"))
        for c, value in (("two", 2.0), ("one", 1.0), ("half", 0.5)):
            inits.append(numpy_helper.from_array(np.array(value, np.float32), f"{c}{i}"))
        nodes += [
            helper.make_node("MatMul", [f"a{i}", f"b{i}"], [f"ab{i}"]),
            helper.make_node("Transpose", [f"ab{i}"], [f"w{i}"]),
            helper.make_node("Mul", [f"bias{i}", f"two{i}"], [f"c1_{i}"]),
            helper.make_node("Add", [f"c1_{i}", f"one{i}"], [f"c2_{i}"]),
            helper.make_node("Div", [f"c2_{i}", f"two{i}"], [f"c3_{i}"]),
            helper.make_node("Sub", [f"c3_{i}", f"half{i}"], [f"c4_{i}"]),
            helper.make_node("MatMul", [current, f"w{i}"], [f"h{i}"]),
            helper.make_node("Add", [f"h{i}", f"c4_{i}"], [f"g{i}"]),
            helper.make_node("Relu", [f"g{i}"], [f"r{i}"]),
        ]
        current = f"r{i}"
    nodes.append(helper.make_node("Identity", [current], ["output0"]))
    graph = helper.make_graph(
        nodes,
        "slow_to_optimize",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", SIZE])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    (path / "1").mkdir(parents=True)
    onnx.save_model(model, str(path / "1" / "model.onnx"))


def timed(path: Path, settings: Settings) -> tuple[float, str | None, ort.InferenceSession]:
    started = time.perf_counter()
    session, result = warm.create_session(path, session_options(settings), settings)
    return time.perf_counter() - started, result, session


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--blocks", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="warm-start-") as folder:
        root = Path(folder)
        slow_to_optimize(args.blocks, root / "repo")
        base: dict[str, Any] = {
            "model_uri": str(root / "repo"),
            "name": "m",
            "model_dir": root / "models",
        }
        on = Settings(**base, cache_dir=root / "cache", intra_op_threads=1)
        off = Settings(**base, cache_dir=root / "cache", intra_op_threads=1,
                       optimized_model_cache=False)  # fmt: skip

        async def fetch() -> Path:
            source = open_source(on)
            return await source.fetch((await source.list_versions())[1])

        path = asyncio.run(fetch())
        saved = warm.optimized_folder(path, on)
        assert saved is not None
        feeds = {"input0": np.ones((1, SIZE), np.float32)}
        times: dict[str, list[float]] = {"cold": [], "first": [], "warm": []}
        reference = None
        for _ in range(args.reps):
            seconds, result, session = timed(path, off)
            assert result is None
            times["cold"].append(seconds)
            reference = session.run(None, feeds)[0]
            shutil.rmtree(saved, ignore_errors=True)
            seconds, result, _ = timed(path, on)
            assert result == "miss", result
            times["first"].append(seconds)
            seconds, result, session = timed(path, on)
            assert result == "hit", result
            times["warm"].append(seconds)
            np.testing.assert_allclose(session.run(None, feeds)[0], reference, rtol=1e-4)
        report(args, path, saved, times)
    return 0


def report(
    args: argparse.Namespace, path: Path, saved: Path, times: dict[str, list[float]]
) -> None:
    median = {kind: statistics.median(values) for kind, values in times.items()}
    spread = {kind: (min(v), max(v)) for kind, v in times.items()}
    graph_bytes = sum(p.stat().st_size for p in saved.iterdir())
    out = sys.stdout
    out.write(
        f"{args.blocks} blocks ({args.blocks * 9 + 1} nodes, model.onnx {path.stat().st_size:,} "
        f"bytes, saved graph {graph_bytes:,} bytes), onnxruntime {ort.__version__}, "
        f"Python {platform.python_version()}, {args.reps} interleaved repetitions\n\n"
    )
    out.write("| Session from | median s | min–max s | vs cold |\n|---|---:|---:|---:|\n")
    labels = {
        "cold": "original, level all, nothing saved (no cache)",
        "first": "original, level all, saving the optimized graph (first start)",
        "warm": "saved optimized graph, optimisation off, digests checked (warm start)",
    }
    for kind, label in labels.items():
        low, high = spread[kind]
        ratio = median[kind] / median["cold"]
        out.write(f"| {label} | {median[kind]:.3f} | {low:.3f}–{high:.3f} | {ratio:.2f}× |\n")


if __name__ == "__main__":
    sys.exit(main())
