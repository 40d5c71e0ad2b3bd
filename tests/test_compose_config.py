"""Long-running hygiene, read from the resolved Compose configuration: every long-running service
rotates its logs, has a restart policy and a healthcheck; one-shot jobs do not restart. Every
profile is on (team mode's services included)."""

from __future__ import annotations

import json
import subprocess

import pytest

from utils.stack import REPO

ONE_SHOT = {"secrets-init", "mlflow-migrate", "team-ca"}


@pytest.fixture(scope="module")
def services() -> dict:
    out = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(REPO / "docker-compose.yml"),
            "--env-file",
            "/dev/null",
            "--profile",
            "*",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["services"]


def test_every_container_log_is_capped(services):
    for name, service in services.items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert logging.get("options", {}).get("max-size") and logging["options"].get("max-file"), name


def test_restart_policies(services):
    for name, service in services.items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart", "no") == expected, name


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name in ONE_SHOT or name == "portainer":
            continue
        image = service["image"]
        inspected = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Healthcheck}}", image],
            capture_output=True,
            text=True,
        )
        if inspected.returncode != 0:
            pytest.skip(f"{image} is not built yet")
        healthcheck = json.loads(inspected.stdout)
        assert healthcheck and healthcheck["Test"][0] in ("CMD", "CMD-SHELL"), name


def test_no_new_privileges_everywhere(services):
    for name, service in services.items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_read_only_root_file_systems_where_feasible(services):
    # jupyter (a user's workspace), portainer (upstream image) and secrets-init (receives its
    # seeds as files) are the justified exceptions, see .compose-lint.yml.
    for name in ("postgres", "ftpd", "mlflow-server", "mlflow-migrate", "team-gateway", "team-ca"):
        assert services[name].get("read_only") is True, name


def test_one_tracking_server_by_default_reached_by_its_name(services):
    # MLFLOW_SERVER_REPLICAS (mlflow-server/README.md, Replicas) and WORKBENCH_MLFLOW_INTERNAL_URL
    # unset: one mlflow-server, on its plain port, which JupyterLab reaches by its name.
    assert services["mlflow-server"].get("scale", 1) == 1
    assert [port["published"] for port in services["mlflow-server"]["ports"]] == ["5000"]
    assert services["jupyter"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow-server:5000"
