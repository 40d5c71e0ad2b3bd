"""The one-shot `mlflow-migrate` job: brings MLflow's schema to this MLflow's head, safely.

`mlflow db upgrade` is not guaranteed to be transactional, and a half-done migration blocks the
next one. So, before touching a schema that is behind, this job writes a pg_dump (custom
format) of the database to the mlflow-server-migrations volume; then it runs the upgrade. It runs
alone, before mlflow-server starts (Compose: service_completed_successfully), so there is
exactly one migrator. A schema already at head is left untouched: no dump, no change.

Rollback (README, "Upgrades"): stop the stack, `pg_restore --clean` the dump named after the
old revision, and go back to the previous image.

Then it brings the basic-auth user store to its head and creates the admin user: MLflow's own
bootstrap_admin_user, which `mlflow server --app-name basic-auth` runs once before it starts its
workers. The server runs `--app-name workbench` (server-app/), for which MLflow leaves it to each
worker: on an empty database two workers raced to create the same tables and one crashed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy
from alembic.script import ScriptDirectory
from mlflow.store.db.utils import _get_alembic_config

URI = os.environ["MLFLOW_BACKEND_STORE_URI"]
BACKUPS = Path(os.environ.get("MLFLOW_MIGRATION_BACKUPS", "/var/lib/mlflow/migrations"))


def log(message: str) -> None:
    print(f"mlflow-migrate: {message}", flush=True)


def current_revision(engine) -> str | None:
    with engine.connect() as connection:
        if not sqlalchemy.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()


def dump(url: sqlalchemy.engine.URL, revision: str) -> Path:
    BACKUPS.mkdir(parents=True, exist_ok=True)
    target = BACKUPS / f"{url.database}-before-upgrade-from-{revision}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump"
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    subprocess.run(["pg_dump", "--format=custom", "--file", str(target), "--host", url.host,
                    "--port", str(url.port or 5432), "--username", url.username, url.database],
                   env=env, check=True)
    return target


def main() -> None:
    url = sqlalchemy.engine.make_url(URI)
    head = ScriptDirectory.from_config(_get_alembic_config(URI)).get_current_head()
    engine = sqlalchemy.create_engine(URI)
    revision = current_revision(engine)
    engine.dispose()
    if revision == head:
        log(f"schema is current ({head}): nothing to do")
        return
    if revision is None:
        log(f"empty database: creating the schema at {head}")
    else:
        target = dump(url, revision)
        log(f"schema {revision} is behind {head}: backed up to {target} ({target.stat().st_size} bytes)")
    subprocess.run(["mlflow", "db", "upgrade", URI], check=True)
    log(f"schema upgraded to {head}")


def bootstrap_basic_auth() -> None:
    """MLflow's bootstrap_admin_user, unless the user store is at its head and has its admin
    already: every start but the first and an upgrade's. The check reads the auth config this
    container's entrypoint wrote and the auth migrations' folder, without importing the auth app
    (which costs ~1.5 s on the way to every start)."""
    import configparser

    import mlflow

    config = configparser.ConfigParser()
    config.read(os.environ["MLFLOW_AUTH_CONFIG_PATH"])
    uri, admin_name = config["mlflow"]["database_uri"], config["mlflow"]["admin_username"]
    migrations = Path(mlflow.__file__).parent / "server" / "auth" / "db" / "migrations"
    head = ScriptDirectory(str(migrations)).get_current_head()
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        tables = sqlalchemy.inspect(connection).get_table_names()
        revision = "alembic_version_auth" in tables and connection.execute(
            sqlalchemy.text("SELECT version_num FROM alembic_version_auth")).scalar()
        admin = "users" in tables and connection.execute(
            sqlalchemy.text("SELECT 1 FROM users WHERE username = :name"), {"name": admin_name}).first()
    engine.dispose()
    if revision == head and admin:
        log(f"basic-auth user store is current ({head}) and has its admin user: nothing to do")
        return
    from mlflow.server.auth import bootstrap_admin_user

    bootstrap_admin_user()
    log(f"basic-auth user store brought to {head}; its admin user exists")


if __name__ == "__main__":
    try:
        main()
        bootstrap_basic_auth()
    except subprocess.CalledProcessError as exc:
        sys.exit(f"mlflow-migrate: {exc}")
