"""Samples for ``test_task_guard.py``, run in a pytest of their own (not collected by the suite:
the file name does not start with ``test_``). One leaves a task running, one does not."""

from __future__ import annotations

import asyncio


async def test_leaves_a_task_behind() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="forgotten-sleeper")


async def test_awaits_its_task() -> None:
    await asyncio.get_running_loop().create_task(asyncio.sleep(0), name="awaited")


async def test_cancels_its_task() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(3600), name="cancelled")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
