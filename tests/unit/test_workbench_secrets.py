"""base/bin/workbench-secrets, what the one-shot secrets-init service runs, on folders standing in
for its seed files and the services' secrets volumes: a secret is set once (from .env, else
random) and then kept; a .env that names another value, or copies that differ, stop it with a
message that says what to do; each copy is owned by its service's user, the uid:gid its
Dockerfile creates."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest

from utils.stack import REPO

TOOL = REPO / "base/bin/workbench-secrets"
SECRETS = {
    "postgres-password": ["postgres"],
    "mlflow-db-password": ["postgres", "mlflow-server"],
    "ftpd-password": ["ftpd", "mlflow-server"],
    "mlflow-admin-password": ["mlflow-server", "jupyter"],
    "mlflow-flask-secret-key": ["mlflow-server"],
    "jupyter-token": ["jupyter"],
    "portainer-admin-password": ["portainer"],
}
root_only = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="init gives each copy to its service's uid (chown): root only, as in the secrets-init container",
)


def secrets_tool(tmp_path, command: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WORKBENCH_SEEDS_DIR": str(tmp_path / "seeds"),
        "WORKBENCH_SECRETS_DIR": str(tmp_path / "volumes"),
    }
    return subprocess.run(
        [sys.executable, TOOL, command], env=env, capture_output=True, text=True, timeout=60
    )


def store(tmp_path, part: str, name: str, value: str, service: str | None = None) -> None:
    folder = tmp_path / part / service if service else tmp_path / part
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(value)


def stored(tmp_path) -> dict[tuple[str, str], str]:
    volumes = tmp_path / "volumes"
    return {(f.parent.name, f.name): f.read_text() for f in volumes.glob("*/*") if not f.name.startswith(".")}


def dockerfile_owner(service: str) -> tuple[int, int]:
    """The uid:gid the service's Dockerfile creates its user with (Portainer's image: root)."""
    if service == "portainer":
        return 0, 0
    text = (REPO / service / "Dockerfile").read_text()
    useradd = re.search(r"useradd [^\n]*--uid (\d+) [^\n]*--gid (\S+)", text)
    gid = useradd.group(2)
    if not gid.isdigit():
        gid = re.search(rf"groupadd [^\n]*--gid (\d+) {gid}\b", text).group(1)
    return int(useradd.group(1)), int(gid)


@root_only
def test_init_takes_env_then_generates_then_keeps(tmp_path):
    (tmp_path / "volumes").mkdir()  # the secrets volumes' mount point
    store(tmp_path, "seeds", "ftpd-password", "from .env\n")
    (tmp_path / "seeds" / "jupyter-token").mkdir()  # unset in .env: Compose mounts an empty directory
    first = secrets_tool(tmp_path, "init")
    assert first.returncode == 0, first.stderr
    values = stored(tmp_path)
    assert set(values) == {(service, name) for name, services in SECRETS.items() for service in services}
    for name, services in SECRETS.items():
        assert len({values[service, name] for service in services}) == 1, f"the copies of {name} differ"
    assert values["ftpd", "ftpd-password"] == "from .env"
    generated = [values[services[0], name] for name, services in SECRETS.items() if name != "ftpd-password"]
    assert all(len(value) >= 24 for value in generated) and len(set(generated)) == len(generated)
    for path in (tmp_path / "volumes").glob("*/*"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == dockerfile_owner(path.parent.name), path
        assert stat.S_IMODE(info.st_mode) == 0o400, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent

    # The next start: the seed gone from .env, the volumes as they were.
    (tmp_path / "seeds" / "ftpd-password").unlink()
    again = secrets_tool(tmp_path, "init")
    assert again.returncode == 0, again.stderr
    assert stored(tmp_path) == values
    assert re.search(r"ftpd-password +kept", again.stdout), again.stdout


def test_a_env_value_other_than_the_stored_one_stops_it(tmp_path):
    store(tmp_path, "volumes", "postgres-password", "original", "postgres")
    store(tmp_path, "seeds", "postgres-password", "changed")
    result = secrets_tool(tmp_path, "init")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD in .env differs" in result.stderr and "make credentials" in result.stderr
    assert stored(tmp_path) == {("postgres", "postgres-password"): "original"}


def test_copies_that_differ_between_volumes_stop_it(tmp_path):
    store(tmp_path, "volumes", "mlflow-admin-password", "one", "mlflow-server")
    store(tmp_path, "volumes", "mlflow-admin-password", "two", "jupyter")
    for command in ("export", "show"):
        result = secrets_tool(tmp_path, command)
        assert result.returncode != 0, command
        assert "the copies of mlflow-admin-password differ" in result.stderr, result.stderr


def test_export_and_show(tmp_path):
    """export (make backup) has every secret or fails; show (make credentials) has the logins."""
    missing = secrets_tool(tmp_path, "export")
    assert missing.returncode != 0 and "not created yet" in missing.stderr
    assert "(not created yet: run make up)" in secrets_tool(tmp_path, "show").stdout
    for name, services in SECRETS.items():
        for service in services:
            store(tmp_path, "volumes", name, f"{name} value", service)
    exported = secrets_tool(tmp_path, "export")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {name: f"{name} value" for name in SECRETS}
    shown = secrets_tool(tmp_path, "show").stdout
    assert "mlflow-admin-password value" in shown and "jupyter-token value" in shown
    assert "mlflow-db-password" not in shown  # only what a person logs in with
