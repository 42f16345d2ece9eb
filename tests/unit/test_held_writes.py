"""``held_writes.HeldHeadTransport``: a response's head leaves with its body in one write; a
head whose body does not follow in the same step still leaves within the loop's turn; close
and write_eof send what is held first; order is kept."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from modelfleet_runtime.held_writes import SMALL, HeldHeadTransport


class Recorder:
    """A transport that records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", list(data)))

    def close(self) -> None:
        self.calls.append(("close", None))

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def is_closing(self) -> bool:
        return False


def held(recorder: Recorder) -> HeldHeadTransport:
    loop = asyncio.get_running_loop()
    return HeldHeadTransport(cast(asyncio.Transport, recorder), loop)


async def test_a_head_and_its_body_leave_in_one_write() -> None:
    recorder = Recorder()
    transport = held(recorder)
    transport.expect_head()
    transport.write(b"HEAD\r\n\r\n")
    assert recorder.calls == []
    transport.write(b"body")
    assert recorder.calls == [("write", b"HEAD\r\n\r\nbody")]
    transport.write(b"more")  # not after a new request's headers: at once
    assert recorder.calls[-1] == ("write", b"more")
    await asyncio.sleep(0)  # the turn's callback finds nothing held
    assert len(recorder.calls) == 2
    assert transport.is_closing() is False  # the rest is the transport's own


async def test_a_large_body_goes_with_its_head_without_a_copy() -> None:
    recorder = Recorder()
    transport = held(recorder)
    transport.expect_head()
    transport.write(b"HEAD")
    body = b"x" * (SMALL + 1)
    transport.write(body)
    assert recorder.calls == [("writelines", [b"HEAD", body])]


async def test_a_head_alone_leaves_within_the_loop_turn() -> None:
    recorder = Recorder()
    transport = held(recorder)
    transport.expect_head()
    transport.write(b"HEAD")
    await asyncio.sleep(0)
    assert recorder.calls == [("write", b"HEAD")]
    transport.write(b"chunk")
    assert recorder.calls == [("write", b"HEAD"), ("write", b"chunk")]


async def test_close_and_write_eof_send_the_held_head_first() -> None:
    for end in ("close", "write_eof"):
        recorder = Recorder()
        transport = held(recorder)
        transport.expect_head()
        transport.write(b"408 answer")
        getattr(transport, end)()
        assert recorder.calls == [("write", b"408 answer"), (end, None)], end


async def test_a_second_head_sends_the_first() -> None:
    recorder = Recorder()
    transport = held(recorder)
    transport.expect_head()
    transport.write(b"100 Continue")
    transport.expect_head()
    transport.write(b"HEAD")
    transport.write(b"body")
    assert recorder.calls == [("write", b"100 Continue"), ("write", b"HEADbody")]
