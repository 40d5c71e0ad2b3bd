"""portainer: wired with the Docker socket and a preset admin password (no first-login race).

Its image cannot be pulled on machines without a registry: the runtime checks then skip, and
the wiring is still checked from the resolved Compose configuration.
"""

from __future__ import annotations

import json

import pytest
import requests


def test_wiring(stack):
    services = json.loads(stack.compose("config", "--format", "json").stdout)["services"]
    config = services["portainer"]
    assert "--admin-password-file" in config["command"]
    mounts = {v["target"]: v for v in config["volumes"]}
    assert mounts["/var/run/docker.sock"]["source"] == "/var/run/docker.sock"
    assert config["ports"][0]["host_ip"] == "127.0.0.1" and config["ports"][0]["target"] == 9443
    # The socket is Portainer's alone.
    for name, service in services.items():
        if name != "portainer":
            assert all(v.get("source") != "/var/run/docker.sock" for v in service.get("volumes", [])), name


@pytest.mark.portainer
def test_admin_logs_in_with_the_preset_password(stack, portainer_available):
    url = stack.url("portainer", 9443, scheme="https")
    password = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "--entrypoint",
        "cat",
        "secrets-init",
        "/secrets/portainer/portainer-admin-password",
    ).stdout
    response = requests.post(
        f"{url}/api/auth", json={"username": "admin", "password": password}, verify=False, timeout=10
    )
    assert response.status_code == 200 and "jwt" in response.json()
