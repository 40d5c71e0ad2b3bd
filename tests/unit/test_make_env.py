"""`make up`'s .env: created on the first run from .env.example with a random value for every
secret, mode 0600, never overwritten."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

from utils.stack import REPO

SECRETS = [
    "POSTGRES_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "FTPD_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SECRET_KEY",
    "JUPYTER_TOKEN",
    "PORTAINER_ADMIN_PASSWORD",
]


def make_env(directory) -> dict[str, str]:
    shutil.copy(REPO / ".env.example", directory / ".env.example")
    env = {**os.environ, "COMPOSE_PROJECT_NAME": f"wbenv{os.getpid()}"}  # no such volumes
    subprocess.run(
        [REPO / "scripts/make-env.sh", ".env"], cwd=directory, env=env, check=True, capture_output=True
    )
    text = (directory / ".env").read_text()
    return dict(re.findall(r"^([A-Z_]+)='?([^'\n]*)'?$", text, re.M))


def test_every_secret_is_random_and_the_file_is_private(tmp_path):
    first = make_env(tmp_path)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    for name in SECRETS:
        assert len(first[name]) >= 24, f"{name} was not generated"
    assert len({first[name] for name in SECRETS}) == len(SECRETS), "two secrets are equal"
    other = tmp_path / "other"
    other.mkdir()
    second = make_env(other)
    assert all(first[name] != second[name] for name in SECRETS), "secrets repeat across installs"


def test_an_existing_env_is_never_overwritten(tmp_path):
    (tmp_path / ".env").write_text("JUPYTER_TOKEN='mine'\n")
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    subprocess.run([REPO / "scripts/make-env.sh", ".env"], cwd=tmp_path, check=True)
    assert (tmp_path / ".env").read_text() == "JUPYTER_TOKEN='mine'\n"


def test_every_variable_of_the_example_is_documented():
    lines = (REPO / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0]} has no comment above it"
