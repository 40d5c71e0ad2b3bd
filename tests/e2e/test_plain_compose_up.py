"""Plain `docker compose up` on a fresh clone with no .env: the stack comes up with secrets
generated inside it, never with a fixed default password."""

from __future__ import annotations

import pytest

from utils.stack import http_session


@pytest.mark.slow
def test_without_env_every_secret_is_generated_and_works(stack_factory):
    plain = stack_factory()  # no secrets given: what `docker compose up` does without .env
    plain.up("mlflow-server", build=True)
    generated = plain.compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "secrets-init",
        "cat",
        "/secrets/mlflow-server/mlflow-admin-password",
    ).stdout
    assert len(generated) >= 24
    created = plain.compose("logs", "--no-color", "secrets-init").stdout
    for name in ("postgres-password", "mlflow-db-password", "ftpd-password", "mlflow-admin-password"):
        assert f"{name}" in created and "generated" in created
    url = plain.url("mlflow-server", 5000)
    search = f"{url}/api/2.0/mlflow/experiments/search"
    assert (
        http_session(("admin", generated)).post(search, json={"max_results": 1}, timeout=10).status_code
        == 200
    )
    assert (
        http_session(("admin", "password")).post(search, json={"max_results": 1}, timeout=10).status_code
        == 401
    )
    # A second start keeps the same secrets (the database was created with them).
    plain.compose("restart", "secrets-init")
    assert "kept" in plain.compose("logs", "--no-color", "secrets-init").stdout
