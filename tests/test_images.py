"""The images hold no secret: not in any layer's instructions (`docker history`), not in the
build contexts they are made from. Secrets exist only at run time, in the secrets volumes."""

from __future__ import annotations

import subprocess

import pytest

from utils.stack import REPO

IMAGES = ["base", "postgres", "ftpd", "mlflow-server", "jupyter"]
SECRETS = {
    "postgres": ["postgres-password", "mlflow-db-password"],
    "ftpd": ["ftpd-password"],
    "mlflow-server": ["mlflow-admin-password", "mlflow-flask-secret-key"],
    "jupyter": ["jupyter-token"],
}


@pytest.mark.parametrize("image", IMAGES)
def test_no_secret_in_any_layer(stack, image):
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", f"workbench/{image}:local"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for service, names in SECRETS.items():
        for name in names:
            assert stack.read_secret(service, name) not in history, f"{name} in workbench/{image}"


def test_no_secret_file_in_any_build_context():
    for context in ["base", "postgres", "ftpd", "mlflow-server", "jupyter", "serving", "scoring"]:
        names = {p.name for p in (REPO / context).rglob("*")}
        assert not names & {".env", "secrets.json"}, context


def test_postgres_runs_as_non_root(stack):
    assert stack.exec("postgres", "id", "-u").stdout.strip() == "999"
