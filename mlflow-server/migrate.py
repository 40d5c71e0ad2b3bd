"""The one-shot `mlflow-migrate` job: brings MLflow's schema to this MLflow's head, safely.

`mlflow db upgrade` is not guaranteed to be transactional, and a half-done migration blocks the
next one. So, before touching a schema that is behind, this job writes a pg_dump (custom
format) of the database to the mlflow-server-migrations volume; then it runs the upgrade. It runs
alone, before mlflow-server starts (Compose: service_completed_successfully), so there is
exactly one migrator. A schema already at head is left untouched: no dump, no change.

Rollback (docs/operations.md, "Upgrades"): stop the stack, `pg_restore --clean` the dump named after the
old revision, and go back to the previous image.

Then it brings the basic-auth user store to its head and creates the admin user: MLflow's own
bootstrap_admin_user, which `mlflow server --app-name basic-auth` runs once before it starts its
workers. The server runs `--app-name workbench` (server-app/), for which MLflow leaves it to each
worker: on an empty database two workers raced to create the same tables and one crashed.

The two schemas' head revisions are the image's MLflow's: the image's build records them
(`migrate.py heads`, Dockerfile) in schema-heads.json, as reading them from the migration scripts
imports MLflow (~3 s). A start that finds both schemas current imports no MLflow at all.

The database password is on no command line: MLflow's `mlflow db upgrade` runs in this process
(its click command, as `mlflow gc` does in gc.py), pg_dump reads PGPASSWORD. Whatever this job
prints, MLflow's log lines and a failure's traceback too, goes out with every password of its
environment replaced, raw and URL-encoded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import sqlalchemy

BACKUPS = Path(os.environ.get("MLFLOW_MIGRATION_BACKUPS", "/var/lib/mlflow/migrations"))
HEADS = Path(__file__).with_name("schema-heads.json")
# The migration scripts of each schema, in MLflow's package.
MIGRATIONS = {"tracking": ("store", "db_migrations"), "auth": ("server", "auth", "db", "migrations")}


def log(message: str) -> None:
    print(f"mlflow-migrate: {message}", flush=True)


class Redacted(io.TextIOBase):
    """A text stream that writes whole lines to another with each secret replaced by `***`, so
    that no secret slips through split across two writes."""

    def __init__(self, stream, secrets: list[str]) -> None:
        self.stream, self.pending = stream, ""
        # Longest first: a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    @property
    def encoding(self) -> str:
        return self.stream.encoding

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines, newline, self.pending = (self.pending + text).rpartition("\n")
        if newline:
            self.stream.write(self.redact(lines + newline))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.redact(self.pending))
            self.pending = ""
        self.stream.flush()


def secrets_of_environment() -> list[str]:
    """Every password this job may know, in each form it can take in a URI or a message."""
    passwords = [os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")]
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION"):
        # As it is spelled in the URI, whatever encoding made it, and decoded. Not parsed with
        # SQLAlchemy: a URI it cannot parse must still be redacted.
        encoded = os.environ.get(name, "").partition("://")[2].rpartition("@")[0].partition(":")[2]
        passwords += [encoded, unquote(encoded)]
    forms = []
    for password in filter(None, passwords):
        for raw in {password, password.strip()}:
            forms += [raw, quote(raw, safe=""), quote(raw), quote_plus(raw)]
    return forms


def current_revision(engine) -> str | None:
    with engine.connect() as connection:
        if not sqlalchemy.inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()


def dump(url: sqlalchemy.engine.URL, revision: str) -> Path:
    BACKUPS.mkdir(parents=True, exist_ok=True)
    target = (
        BACKUPS
        / f"{url.database}-before-upgrade-from-{revision}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump"
    )
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    subprocess.run(
        [
            "pg_dump",
            "--format=custom",
            "--file",
            str(target),
            "--host",
            url.host,
            "--port",
            str(url.port or 5432),
            "--username",
            url.username,
            url.database,
        ],
        env=env,
        check=True,
    )
    return target


def schema_heads() -> dict[str, str]:
    """The head revision of each schema's migrations in this MLflow (`migrate.py heads`)."""
    import mlflow
    from alembic.script import ScriptDirectory

    package = Path(mlflow.__file__).parent
    return {
        name: ScriptDirectory(str(package.joinpath(*parts))).get_current_head()
        for name, parts in MIGRATIONS.items()
    }


def main(head: str) -> None:
    uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
    url = sqlalchemy.engine.make_url(uri)
    engine = sqlalchemy.create_engine(uri)
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
    from mlflow.db import upgrade

    upgrade.main(args=[uri], prog_name="mlflow db upgrade", standalone_mode=False)
    log(f"schema upgraded to {head}")


def bootstrap_basic_auth(head: str) -> None:
    """MLflow's bootstrap_admin_user, unless the user store is at its head and has its admin
    already: every start but the first and an upgrade's. The check reads the auth config this
    container's entrypoint wrote, without importing the auth app (~1.5 s more)."""
    import configparser

    config = configparser.ConfigParser()
    config.read(os.environ["MLFLOW_AUTH_CONFIG_PATH"])
    uri, admin_name = config["mlflow"]["database_uri"], config["mlflow"]["admin_username"]
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        tables = sqlalchemy.inspect(connection).get_table_names()
        revision = (
            "alembic_version_auth" in tables
            and connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version_auth")).scalar()
        )
        admin = (
            "users" in tables
            and connection.execute(
                sqlalchemy.text("SELECT 1 FROM users WHERE username = :name"), {"name": admin_name}
            ).first()
        )
    engine.dispose()
    if revision == head and admin:
        log(f"basic-auth user store is current ({head}) and has its admin user: nothing to do")
        return
    from mlflow.server.auth import bootstrap_admin_user

    bootstrap_admin_user()
    log(f"basic-auth user store brought to {head}; its admin user exists")


# The workbench's audit trail (server-app/workbench_audit.py), in MLflow's database: in its dumps
# and backups. MLflow's migrations leave tables they do not know alone.
AUDIT_TABLE = """
CREATE TABLE IF NOT EXISTS workbench_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    username text,
    method text NOT NULL,
    route text NOT NULL,
    status integer NOT NULL,
    targets jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS workbench_audit_at ON workbench_audit (at);
CREATE INDEX IF NOT EXISTS workbench_audit_username ON workbench_audit (username, at);
"""


def create_audit_table() -> None:
    engine = sqlalchemy.create_engine(os.environ["MLFLOW_BACKEND_STORE_URI"])
    with engine.begin() as connection:
        connection.exec_driver_sql(AUDIT_TABLE)
    engine.dispose()
    log("audit trail table is there (workbench_audit)")


if __name__ == "__main__":
    if sys.argv[1:] == ["heads"]:
        print(json.dumps(schema_heads()))
        sys.exit()
    secrets = secrets_of_environment()
    sys.stdout, sys.stderr = Redacted(sys.stdout, secrets), Redacted(sys.stderr, secrets)
    heads = json.loads(HEADS.read_text())
    try:
        main(heads["tracking"])
        bootstrap_basic_auth(heads["auth"])
        create_audit_table()
    except Exception as exc:  # noqa: BLE001 -- any failure: its traceback goes through the redacting stream too
        traceback.print_exc()
        print(f"mlflow-migrate: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
