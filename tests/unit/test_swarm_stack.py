"""swarm/stack.py's conversions, on a small Compose configuration as `docker compose config
--format json` writes it (no Docker). The deployment itself: tests/swarm/test_swarm.py."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import stat

import pytest

from utils.stack import REPO

_loader = importlib.machinery.SourceFileLoader("swarm_stack", str(REPO / "swarm/stack.py"))
_spec = importlib.util.spec_from_loader("swarm_stack", _loader)
stack_py = importlib.util.module_from_spec(_spec)
_loader.exec_module(stack_py)

COMPOSE = {
    "name": "wbunit",
    "services": {
        "secrets-init": {"image": "workbench/base:local", "restart": "no"},
        "postgres": {
            "image": "workbench/postgres:local",
            "restart": "unless-stopped",
            "mem_limit": "1073741824",
            "shm_size": 268435456,
            "security_opt": ["no-new-privileges:true"],
            "depends_on": {"secrets-init": {"condition": "service_completed_successfully"}},
            "environment": {"POSTGRES_PASSWORD_FILE": "/run/secrets/postgres-password"},
            "tmpfs": ["/var/run/postgresql:uid=999,gid=999,mode=2775", "/tmp"],
            "volumes": [
                {"type": "volume", "source": "postgres-data", "target": "/var/lib/postgresql/data"},
                {"type": "volume", "source": "postgres-secrets", "target": "/run/secrets", "read_only": True},
            ],
            "networks": {"backend": None},
        },
        "mlflow-migrate": {
            "image": "workbench/mlflow-server:local",
            "restart": "no",
            "networks": {"backend": None},
        },
        "mlflow-server": {
            "image": "workbench/mlflow-server:local",
            "restart": "unless-stopped",
            "scale": 2,
            "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 5000, "published": "5000"}],
            "networks": {"backend": None, "frontend": None},
        },
        "jupyter": {
            "image": "workbench/jupyter:local",
            "environment": {"MLFLOW_TRACKING_URI": "http://mlflow-server:5000"},
            "volumes": [
                {"type": "bind", "source": "/repo/notebooks", "target": "/home/jovyan/work/notebooks"}
            ],
            "networks": {"frontend": None},
        },
    },
    "networks": {
        "backend": {"name": "wbunit_backend", "internal": True},
        "frontend": {"name": "wbunit_frontend"},
    },
    "configs": {"postgres-password": {"content": "from-dot-env"}, "jupyter-token": {"content": ""}},
}


@pytest.fixture
def rendered(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    return stack_py.workbench(
        COMPOSE, registry="reg:5100", replicas=3, mlflow_port=5000, jupyter_port=8888, portainer=False
    )


def test_secrets_become_swarm_secrets_of_their_users_only(rendered, tmp_path):
    postgres = rendered["services"]["postgres"]
    assert {s["source"]: (s["uid"], s["gid"], s["mode"]) for s in postgres["secrets"]} == {
        "postgres-password": ("999", "999", 0o400),
        "mlflow-db-password": ("999", "999", 0o400),
    }
    assert all(not m.get("source", "").endswith("-secrets") for m in postgres["volumes"])
    assert rendered["secrets"]["postgres-password"] == {"file": str(tmp_path / "postgres-password")}
    assert "secrets-init" not in rendered["services"]
    assert "jupyter-token" in {s["source"] for s in rendered["services"]["jupyter"]["secrets"]}


def test_compose_only_settings_are_converted(rendered):
    postgres = rendered["services"]["postgres"]
    assert postgres["image"] == "reg:5100/workbench/postgres:local"
    assert postgres["deploy"]["endpoint_mode"] == "dnsrr"
    assert postgres["deploy"]["restart_policy"]["condition"] == "any"
    assert postgres["deploy"]["resources"] == {"limits": {"memory": "1073741824"}}
    assert postgres["deploy"]["placement"] == {"constraints": ["node.role == manager"]}
    assert postgres["deploy"]["update_config"]["order"] == "stop-first"  # never two on one data volume
    assert not {"depends_on", "shm_size", "security_opt", "tmpfs", "restart", "mem_limit"} & set(postgres)
    assert {"type": "tmpfs", "target": "/var/run/postgresql"} in postgres["volumes"]
    assert rendered["services"]["mlflow-migrate"]["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert rendered["networks"] == {
        "backend": {"driver": "overlay", "attachable": True, "internal": True},
        "frontend": {"driver": "overlay", "attachable": True},
    }


def test_tracking_servers_are_replicas_behind_the_edge(rendered):
    server = rendered["services"]["mlflow-server"]
    assert server["deploy"]["replicas"] == 3
    assert server["deploy"]["update_config"]["order"] == "start-first"
    assert "ports" not in server and "placement" not in server["deploy"]
    edge = rendered["services"]["edge"]
    assert {(p["published"], p["mode"]) for p in edge["ports"]} == {(5000, "host"), (8888, "host")}
    assert rendered["services"]["jupyter"]["environment"]["MLFLOW_TRACKING_URI"] == "http://edge:5080"
    config = rendered["configs"]["edge-config"]
    assert config["name"] == f"wbunit_edge-{stack_py.digest(stack_py.EDGE_CONFIG)}"


def test_secret_files_are_made_once_from_dot_env_else_random(tmp_path, monkeypatch):
    folder = tmp_path / "secrets"
    stack_py.create_secrets(COMPOSE, folder)
    assert (folder / "postgres-password").read_text() == "from-dot-env"
    token = (folder / "jupyter-token").read_text()
    assert len(token) >= 32
    assert stat.S_IMODE((folder / "jupyter-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    stack_py.create_secrets(COMPOSE, folder)  # again: kept
    assert (folder / "jupyter-token").read_text() == token
    changed = {**COMPOSE, "configs": {"postgres-password": {"content": "changed"}}}
    with pytest.raises(SystemExit, match="POSTGRES_PASSWORD in .env differs"):
        stack_py.create_secrets(changed, folder)


def test_a_served_model_and_its_gateway():
    args = argparse.Namespace(
        project="wbunit",
        model="models:/m@champion",
        name="m",
        image="reg/workbench-model/m:1",
        gateway_image="reg/workbench/gateway:local",
        memory="2g",
        port=5001,
        replicas=2,
        workers=2,
        rate_limit=1000,
        body_limit_bytes=10485760,
        keys="on",
    )
    rendered = stack_py.serve(args)
    model, gateway = rendered["services"]["serve-5001-model"], rendered["services"]["serve-5001"]
    assert model["deploy"]["replicas"] == 2
    assert model["deploy"]["update_config"]["order"] == "start-first"
    assert model["user"] == "65534:65534" and model["read_only"] and model["cap_drop"] == ["ALL"]
    assert gateway["environment"]["UPSTREAM"] == "serve-5001-model"
    assert gateway["ports"] == [{"target": 8080, "published": 5001, "mode": "host"}]
    # `make serve-key` finds the gateway's containers by these labels (serving/serve.sh, gateways()).
    assert gateway["labels"]["org.workbench.serving.gateway"] == "true"
    assert gateway["labels"]["org.workbench.project"] == "wbunit"
    assert rendered["networks"]["frontend"] == {"external": True, "name": "wbunit_frontend"}
