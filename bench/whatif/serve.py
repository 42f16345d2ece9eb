"""Serves the runtime with the proposed what-ifs applied, for bench/run.py's "ours+fastpath"
row: the lead's ``build(settings)`` wrapped in bench/whatif/fastpath.py's FastInfer, under the
same uvicorn configuration as server.serve. Optional: ``--inline`` runs ONNX Runtime on the
event loop (no worker-thread hop), the second proposal.

    bench/.work/venvs/ours/bin/python bench/whatif/serve.py MODEL.onnx NAME PORT [--inline]
        [--batch DELAY_US]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastpath import FastInfer

from modelfleet_runtime.app import create_app
from modelfleet_runtime.config import Settings
from modelfleet_runtime.dataplane import DataPlane
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.models.registry import ModelRegistry
from modelfleet_runtime.models.repository import ModelRepository
from modelfleet_runtime.storage import open_source


def build(settings: Settings) -> tuple[Any, DataPlane, Metrics]:
    """server.build, returning the Metrics object as well (FastInfer records into it)."""
    metrics = Metrics()
    registry = ModelRegistry(settings.model_name)
    repository = ModelRepository(settings, registry, open_source(settings), metrics)
    dataplane = DataPlane(settings, registry)
    return create_app(dataplane, metrics, repository.run), dataplane, metrics


def main() -> None:
    model_path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = Settings(
        model_uri=model_path, name=name, port=port, intra_op_threads=1, inter_op_threads=1,
        poll_interval=0, log_level="WARNING",
        model_dir=Path(__file__).resolve().parent.parent / ".work" / "tmp" / f"whatif-{port}",
    )  # fmt: skip
    if "--batch" in sys.argv:  # --batch DELAY_US: dynamic batching, max batch 32
        delay = int(sys.argv[sys.argv.index("--batch") + 1])
        settings = settings.model_copy(update={"max_batch_size": 32, "max_queue_delay_us": delay})
    app, dataplane, metrics = build(settings)
    if "--inline" in sys.argv:

        async def inline(model: Any, inputs: Any, outputs: Any) -> Any:
            return model.run(inputs, outputs)

        dataplane.runner = inline
    uvicorn.run(
        FastInfer(app, dataplane, metrics),
        host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False,
        log_config=None, server_header=False,
    )  # fmt: skip


if __name__ == "__main__":
    main()
