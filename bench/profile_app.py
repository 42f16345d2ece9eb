"""Where our hot path spends its time: drives the runtime's ASGI app in-process (no sockets,
no uvicorn) with N concurrent clients, times each stage of a request alone, and prints a
cProfile summary of the event-loop thread.

    bench/.work/venvs/ours/bin/python bench/profile_app.py bench/.work/models/mlp_small/model.onnx \
        bench/.work/bodies/mlp_small.json [--clients 16 --requests 20000 --batch]

Run it with ``taskset -c 0`` for figures comparable with bench/run.py's server CPU. It uses
the repository's own ``modelfleet_runtime`` (the "ours" venv).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfleet_runtime import codec
from modelfleet_runtime.config import Settings
from modelfleet_runtime.server import build

Message = dict[str, Any]
_keep: set[asyncio.Future[None]] = set()


def _scope(path: str, body: bytes, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "state": dict(state),
    }  # fmt: skip


async def call(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def startup(app: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    _keep.add(asyncio.ensure_future(app(scope, inbox.get, outbox.put)))  # no GC mid-run
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return state


def what_if_fast_ids() -> None:
    """Replace the uuid4 that app.py draws per request with a counter (no getrandom call)."""
    import itertools
    import types

    from modelfleet_runtime import app as app_module

    counter = itertools.count(1)
    fake = types.SimpleNamespace(uuid4=lambda: types.SimpleNamespace(hex=f"{next(counter):016x}"))
    app_module.uuid = fake  # type: ignore[attr-defined]


def what_if_inline(dataplane: Any) -> None:
    """Run the model on the event loop thread instead of hopping to a worker thread."""

    async def inline(model: Any, inputs: Any, outputs: Any) -> Any:
        return model.run(inputs, outputs)

    dataplane.runner = inline


def per_call_us(fn: Callable[[], object], n: int = 3000) -> float:
    for _ in range(100):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("body")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="DELAY_US",
        help="dynamic batching on: max batch 32 and this queue delay",
    )
    parser.add_argument(
        "--fast-id",
        action="store_true",
        help="what-if: request ids from a counter instead of uuid4 (urandom)",
    )
    parser.add_argument(
        "--inline",
        action="store_true",
        help="what-if: run ONNX Runtime on the event loop, no thread hop",
    )
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    extra: dict[str, Any] = {}
    if args.batch is not None:
        extra = {"max_batch_size": 32, "max_queue_delay_us": args.batch}
    if args.fast_id:
        what_if_fast_ids()
    settings = Settings(
        model_uri=args.model, name="m", intra_op_threads=1, inter_op_threads=1,
        poll_interval=0, model_dir=Path("/tmp/modelfleet-profile"), log_level="WARNING",
        **extra,
    )  # fmt: skip
    app, dataplane = build(settings)
    state = await startup(app)
    path, body = "/v2/models/m/infer", Path(args.body).read_bytes()
    deadline = time.monotonic() + 60
    while (await call(app, _scope(path, body, state), body))[0] != 200:
        assert time.monotonic() < deadline, "model never became ready"
        await asyncio.sleep(0.1)

    model = dataplane.model("m")
    if args.inline:
        what_if_inline(dataplane)
    decoded = codec.decode_infer(body, None, max_elements=settings.max_body_size)
    outputs = model.run(decoded.inputs)
    stages = {
        "codec.decode_infer": lambda: codec.decode_infer(body, None, settings.max_body_size),
        "OnnxModel.run (inline)": lambda: model.run(decoded.inputs),
    }
    for name, fn in stages.items():
        print(f"  {name:40} {per_call_us(fn):8.1f} µs")  # noqa: T201
    response = await dataplane.infer(model, decoded)
    enc = lambda: codec.encode_infer(response, decoded.binary_outputs)  # noqa: E731
    print(f"  {'codec.encode_infer':40} {per_call_us(enc):8.1f} µs")  # noqa: T201
    infer_n = 3000
    start = time.perf_counter()
    for _ in range(infer_n):
        await dataplane.infer(model, decoded)
    print(f"  {'DataPlane.infer (thread hop, serial)':40} "  # noqa: T201
          f"{(time.perf_counter() - start) / infer_n * 1e6:8.1f} µs")  # fmt: skip
    del outputs

    async def client(n: int) -> None:
        for _ in range(n):
            status, _ = await call(app, _scope(path, body, state), body)
            assert status == 200

    each = args.requests // args.clients
    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(each) for _ in range(args.clients)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    total = each * args.clients
    print(f"  whole ASGI app, {args.clients} clients: {total / elapsed:,.0f} req/s, "  # noqa: T201
          f"{elapsed / total * 1e6:.1f} µs wall and {cpu / total * 1e6:.1f} µs CPU "
          "per request (no HTTP)")  # fmt: skip

    if args.no_profile:
        return
    profiler = cProfile.Profile()
    profiler.enable()
    await asyncio.gather(*(client(each // 2) for _ in range(args.clients)))
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(45)
    print(out.getvalue())  # noqa: T201
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())  # noqa: T201


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
