"""The server tests' `server` fixture: the stack's mlflow-server (fast paths on) and a second
mlflow-server of the same stack whose fast paths are off (tests/utils/servers.py). Server-level
tests that take `server` run against both: the escape hatch is proven, not assumed."""

from __future__ import annotations

import pytest

from utils.servers import stacks_server


@pytest.fixture(scope="module", params=["fast-paths-on", "fast-paths-off"])
def server(request, stack):
    if request.param == "fast-paths-on":
        return stacks_server(stack)
    return request.getfixturevalue("unverified_mlflow_server")
