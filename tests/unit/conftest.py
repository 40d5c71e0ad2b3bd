"""The unit tier: pure logic, tested without Docker, in seconds (make test-unit).

No test here takes the `stack` fixture (or any fixture that does): nothing is built or started.
The modules under test are imported from their folders as their images run them, by their bare
names (`import openapi`, `import workbench_guard`).
"""

from __future__ import annotations

import sys

import pytest

from utils.stack import REPO

for folder in ("serving", "mlflow-server/server-app"):
    if str(REPO / folder) not in sys.path:
        sys.path.insert(0, str(REPO / folder))

# The fixtures of tests/conftest.py that bring up a stack or talk to one.
STACK_FIXTURES = {"stack", "stack_factory", "admin_auth", "mlflow_url", "portainer_available"}
UNIT = REPO / "tests" / "unit"


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.is_relative_to(UNIT) and STACK_FIXTURES & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid} needs a stack: it belongs outside tests/unit")
