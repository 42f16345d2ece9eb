"""The request envelope's own CPU cost: ``DataPlane.handle`` around a ``work`` that does
nothing, 200,000 times, five times over, the least per call printed (a microbenchmark, for a
change to the envelope whose cost drowns in a whole request's noise).

    taskset -c 0 .venv/bin/python bench/handle_ab.py MODEL.onnx
    PYTHONPATH=OLD/runtime:OLD/client taskset -c 0 .venv/bin/python bench/handle_ab.py MODEL.onnx

The second form measures another commit's sources (``git archive REV runtime client``);
alternate the two a few times. No header, no tracer: the path every untraced request takes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import modelfleet_runtime
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.models.onnx import OnnxModel
from modelfleet_runtime.models.registry import ModelRegistry

CALLS, ROUNDS = 200_000, 5


async def nothing(_model: OnnxModel) -> int:
    return 1


async def main(path: Path) -> None:
    settings = Settings(name="m", model_uri=str(path), intra_op_threads=1, inter_op_threads=1)
    registry = ModelRegistry("m")
    registry.publish(OnnxModel.load("m", 1, path, settings))
    registry.settle()
    dataplane = DataPlane(settings, registry)
    for _ in range(2000):
        await dataplane.handle("v2", "m", None, nothing)
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS):
            await dataplane.handle("v2", "m", None, nothing)
        rounds.append((time.process_time() - started) / CALLS * 1e6)
    source = Path(modelfleet_runtime.__file__).parents[2]
    print(  # noqa: T201
        f"{source}: DataPlane.handle {min(rounds):.2f} µs CPU per call (least of {ROUNDS}; "
        f"all {', '.join(f'{r:.2f}' for r in rounds)})"
    )


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
