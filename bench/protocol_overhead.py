"""What the slow-client guard (``http_limits``) costs a request, measured where it acts:
``.venv/bin/python bench/protocol_overhead.py [--requests 20000 --rounds 7]``.

Drives uvicorn's httptools protocol and ``http_limits``' guarded one, in one uvloop loop,
over an in-memory transport: each request is fed in one ``data_received`` (a 160-byte JSON
POST, as the small-model bench sends), answered by a bare ASGI app, and completed
(keep-alive). Rounds alternate between the two classes, in both orders, so noise falls on both;
prints microseconds per request (median and best round) and the ratios: the parser and
request-cycle work that the end-to-end bench (bench/run.py) hides inside a ~1 ms request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from modelfleet_runtime.config import Settings
from modelfleet_runtime.http_limits import protocol_class
from modelfleet_runtime.metrics import Metrics

BODY = b'{"inputs":[{"name":"input0","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}' * 2
REQUEST = (
    b"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
) + BODY


class Transport(asyncio.Transport):
    """Just enough of a socket transport: writes are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8080) if name in ("sockname", "peername") else default

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(_scope: Any, receive: Any, send: Any) -> None:
    await receive()
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    await send(start)
    await send({"type": "http.response.body", "body": b"{}"})


async def per_request_us(cls: type[HttpToolsProtocol], requests: int) -> float:
    config = uvicorn.Config(app, http=cls, log_config=None, access_log=False)
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(Transport())
    started = time.perf_counter()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        while not protocol.cycle.response_complete:  # let the app's task run
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    guarded = protocol_class(Settings(grpc_port=None), Metrics())
    times: dict[str, list[float]] = {"uvicorn httptools": [], "guarded (http_limits)": []}
    classes: dict[str, type[HttpToolsProtocol]] = {
        "uvicorn httptools": HttpToolsProtocol,
        "guarded (http_limits)": guarded,
    }
    for round_ in range(rounds):  # ABBA: neither class always runs second
        for name in sorted(classes, reverse=bool(round_ % 2)):
            times[name].append(await per_request_us(classes[name], requests))
    for name, values in times.items():
        median, best = statistics.median(values), min(values)
        line = f"{name:22} median {median:6.2f} µs/request, best {best:6.2f} µs ({rounds} rounds)"
        print(line)  # noqa: T201
    for pick in (statistics.median, min):
        ours, theirs = pick(times["guarded (http_limits)"]), pick(times["uvicorn httptools"])
        print(f"guarded / uvicorn ({pick.__name__}): {ours / theirs:.3f} ({ours - theirs:+.2f} µs)")  # noqa: T201


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    uvloop.run(main(args.requests, args.rounds))
