"""The one waiting primitive of the suite: every wait has a timeout and says what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], *, timeout: float, interval: float = 1.0, what: str = "condition"
) -> T:
    """Call `predicate` until it returns a truthy value (returned) or `timeout` seconds pass.

    Exceptions count as "not yet"; the last value or exception is in the timeout's message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - "not yet", remembered for the message
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)
