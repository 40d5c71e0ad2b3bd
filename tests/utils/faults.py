"""Crashing a service the way the kernel or a failing host would, and timing its recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from utils.stack import Stack, container_state
from utils.wait import wait_until


def crash(stack: Stack, service: str) -> float:
    """SIGKILL the container's PID 1 from the host: a crash, as the OOM killer would do it.

    (`docker kill` would count as a manual stop, and Docker's restart policy ignores those;
    a crash is what the policy is for.) Returns the monotonic time of the kill."""
    pid = stack.inspect(service)["State"]["Pid"]
    assert pid, f"{service} is not running"
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def healthy(container: str) -> bool:
    return container_state(container, "Health.Status") == "healthy"


def wait_container_healthy(container: str, *, timeout: float = 120) -> float:
    """Wait for the container's healthcheck to pass; returns the monotonic time it did."""
    wait_until(lambda: healthy(container), timeout=timeout, interval=0.5, what=f"{container} healthy")
    return time.monotonic()


def wait_healthy(stack: Stack, service: str, *, timeout: float = 120) -> float:
    """Wait for a service's healthcheck to pass again; returns the monotonic time it did. (A
    crash or a restart keeps the container, so its id stays.)"""
    return wait_container_healthy(stack.container_id(service), timeout=timeout)


def start_in(stack: Stack, service: str, code: str, *args: str) -> subprocess.Popen:
    """Start Python code inside a service's container, in the background; stdout is a pipe."""
    command = [
        "docker",
        "compose",
        "-p",
        stack.project,
        "--env-file",
        str(stack.env_file),
        "exec",
        "-T",
        service,
        "python3",
        "-u",
        "-c",
        code,
        *args,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **stack.secrets},
    )
