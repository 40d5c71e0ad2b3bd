"""Schema migrations: one migrator (the mlflow-migrate job), a pg_dump before any migration of a
schema that is behind, and nothing at all done to a schema that is current."""

from __future__ import annotations

import json
import subprocess
import threading
from urllib.parse import quote, quote_plus

import pytest

from conftest import HOSTILE_SECRETS

HEAD = """
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config
import os
print(ScriptDirectory.from_config(_get_alembic_config(os.environ["MLFLOW_BACKEND_STORE_URI"])).get_current_head())
"""

DOWNGRADE_ONE = """
import os
from alembic import command
from mlflow.store.db.utils import _get_alembic_config
command.downgrade(_get_alembic_config(os.environ["MLFLOW_BACKEND_STORE_URI"]), "-1")
"""


def migrate(stack, *command: str) -> str:
    result = stack.compose("run", "--rm", "--no-deps", "-T", "mlflow-migrate", *command)
    return result.stdout + result.stderr


def dumps(stack) -> list[str]:
    return migrate(stack, "ls", "/var/lib/mlflow/migrations").split()


def test_mlflow_server_waits_for_the_one_migrator(stack):
    services = json.loads(stack.compose("config", "--format", "json").stdout)["services"]
    depends = services["mlflow-server"]["depends_on"]["mlflow-migrate"]["condition"]
    assert depends == "service_completed_successfully"
    assert "schema" in stack.logs("mlflow-migrate")  # it ran, and said what it did


def test_rerun_on_a_current_schema_changes_nothing(stack):
    before = stack.psql("SELECT version_num FROM alembic_version")
    tables = stack.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
    dumps_before = dumps(stack)
    assert "schema is current" in migrate(stack)
    assert stack.psql("SELECT version_num FROM alembic_version") == before
    assert (
        stack.psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == tables
    )
    assert dumps(stack) == dumps_before, "a dump was taken although nothing was migrated"


@pytest.mark.slow
def test_a_schema_behind_is_dumped_then_upgraded(stack_factory):
    stack = stack_factory()
    stack.up("postgres", build=True)
    assert "creating the schema" in migrate(stack)
    head = migrate(stack, "python3", "-c", HEAD).strip().splitlines()[-1]
    migrate(stack, "python3", "-c", DOWNGRADE_ONE)
    behind = stack.psql("SELECT version_num FROM alembic_version")[0][0]
    assert behind != head

    log = migrate(stack)
    assert f"schema {behind} is behind {head}: backed up to" in log, log
    assert stack.psql("SELECT version_num FROM alembic_version") == [[head]]
    [dump] = dumps(stack)
    assert dump.startswith(f"mlflow-before-upgrade-from-{behind}-")
    # The dump is a real custom-format archive holding MLflow's tables.
    listing = migrate(stack, "pg_restore", "--list", f"/var/lib/mlflow/migrations/{dump}")
    assert "TABLE public runs" in listing and "TABLE public metrics" in listing


def test_the_database_password_is_in_no_command_line_and_no_error(stack):
    """A migration that fails, watched with `ps` on the host while it runs: the database password
    (a hostile one), raw or URL-encoded, is in no process's arguments and not in what it prints."""
    password = HOSTILE_SECRETS["MLFLOW_DB_PASSWORD"]
    forms = {password, password.strip(), quote(password, safe=""), quote(password), quote_plus(password)}
    result: dict[str, subprocess.CompletedProcess] = {}
    # The `postgres` database: MLflow's role may connect to it (PUBLIC's default) but not create
    # tables there, so the migration gets as far as the upgrade and fails in it.
    run = threading.Thread(
        target=lambda: result.update(
            done=stack.compose(
                "run",
                "--rm",
                "--no-deps",
                "-T",
                "-e",
                "MLFLOW_DB_NAME=postgres",
                "mlflow-migrate",
                check=False,
            )
        )
    )
    run.start()
    seen: set[str] = set()
    while run.is_alive():
        # From the start: the entrypoint's own steps (it URL-encodes the password) included.
        seen.update(
            subprocess.run(
                ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=False
            ).stdout.splitlines()
        )
    run.join()
    # The poll did watch the job: its process was on the host's list.
    assert any("/opt/mlflow-server/migrate.py" in line for line in seen), "ps never saw the migration run"
    leaked = [line for line in seen if any(form in line for form in forms)]
    assert not leaked, f"the database password is on a command line: {len(leaked)} process(es)"
    output = result["done"].stdout + result["done"].stderr
    assert result["done"].returncode != 0, output
    assert "permission denied" in output.lower(), output  # it still says why it failed
    assert not any(form in output for form in forms), "the database password is in the job's output"
