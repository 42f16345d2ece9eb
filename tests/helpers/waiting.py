"""Waiting on conditions, for every test that starts something: a poll loop with a deadline,
and the status code of one HTTP GET (0 while nothing answers). Light on purpose: the e2e
helpers and the benches import it without the runtime."""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_status(url: str, timeout: float = 1.0, verify: ssl.SSLContext | bool = True) -> int:
    """The status of ``GET url``, or 0 when the connection fails (not up yet, or gone);
    ``verify``: the TLS context of an https:// URL."""
    try:
        return httpx.get(url, timeout=timeout, verify=verify).status_code
    except httpx.TransportError:
        return 0
