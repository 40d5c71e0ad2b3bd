"""A team's own PostgreSQL instead of the bundled postgres (docs/operations.md, "External
database"): set up with the SQL that page gives, MLflow's rows land there (over TLS) and not in the
bundled one; with WORKBENCH_BUNDLED_POSTGRES=0 Compose starts no postgres and `make backup`
refuses."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import uuid

import pytest

from utils.servers import ALLOWED_HOSTS
from utils.stack import REPO, Stack, http_session
from utils.wait import wait_until

# Names other than the defaults, so that each setting is seen to reach the connection URIs; the
# role's name needs URL-encoding and SQL quoting.
TEAM_DB = {
    "MLFLOW_DB_USER": "ml@team",
    "MLFLOW_DB_NAME": "team_tracking",
    "MLFLOW_AUTH_DB_NAME": "team_users",
}


def documented_sql() -> str:
    """The SQL of docs/operations.md's "External database", for the names above."""
    page = (REPO / "docs" / "operations.md").read_text()
    section = page.split("\n## External database\n", 1)[1]
    sql = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    sql = re.sub(r"\bmlflow_auth\b", TEAM_DB["MLFLOW_AUTH_DB_NAME"], sql)
    sql = re.sub(r"\bDATABASE mlflow\b", f"DATABASE {TEAM_DB['MLFLOW_DB_NAME']}", sql)
    return re.sub(r"\bmlflow\b", f'"{TEAM_DB["MLFLOW_DB_USER"]}"', sql)  # the role


def docker(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, input=input, timeout=300
    )
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


def healthy(container: str) -> bool:
    return docker("inspect", "-f", "{{.State.Health.Status}}", container).strip() == "healthy"


@pytest.mark.slow
def test_mlflow_on_a_teams_own_postgresql(stack, admin_auth):
    tag = uuid.uuid4().hex[:6]
    team_pg, server = f"{stack.project}-team-postgres-{tag}", f"{stack.project}-team-mlflow-{tag}"
    bundled = stack.inspect("postgres")
    # On the frontend network, the one mlflow-server and mlflow-migrate reach servers outside the
    # stack through (backend is internal); TLS on with the certificate Debian's ssl-cert made.
    frontend = f"{stack.project}_frontend"
    try:
        docker(
            "run", "-d", "--name", team_pg, "--network", frontend, "--network-alias", "team-postgres",
            "-v", f"{team_pg}:/var/lib/postgresql/data",
            # No init scripts: the role and databases are made with the documented SQL.
            "--tmpfs", "/docker-entrypoint-initdb.d",
            "-e", "POSTGRES_PASSWORD",
            bundled["Config"]["Image"],
            "postgres", "-c", "config_file=/etc/postgresql/postgresql.workbench.conf", "-c", "ssl=on",
            "-c", "ssl_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
            "-c", "ssl_key_file=/etc/ssl/private/ssl-cert-snakeoil.key",
            env={**os.environ, "POSTGRES_PASSWORD": secrets.token_urlsafe(24)},
        )  # fmt: skip
        wait_until(lambda: healthy(team_pg), timeout=120, what=f"{team_pg} healthy")

        def team_psql(sql: str, database: str) -> list[str]:
            out = docker("exec", team_pg, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-U", "postgres",
                         "-d", database, "-c", sql)  # fmt: skip
            return out.splitlines()

        # The role gets the stack's mlflow-db-password, which mlflow-server reads from its volume.
        docker(
            "exec", "-i", "-e", "MLFLOW_DB_PASSWORD", team_pg,
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres",
            env={**os.environ, "MLFLOW_DB_PASSWORD": stack.secrets["MLFLOW_DB_PASSWORD"]},
            input=documented_sql(),
        )  # fmt: skip

        # The settings as a team puts them in .env: the compose file hands them on.
        team = Stack(
            stack.project,
            stack.env_file,
            {
                **stack.secrets,
                **TEAM_DB,
                "WORKBENCH_BUNDLED_POSTGRES": "0",
                "MLFLOW_DB_HOST": "team-postgres",
                "MLFLOW_DB_SSLMODE": "require",
            },
        )
        migrated = team.compose("run", "--rm", "--no-deps", "-T", "mlflow-migrate").stdout
        assert "empty database: creating the schema" in migrated, migrated
        team.compose(
            "run", "-d", "--no-deps", "--name", server, "-p", "127.0.0.1::5000", "-v", "/tmp",
            "-e", f"MLFLOW_SERVER_ALLOWED_HOSTS={ALLOWED_HOSTS}",
            "mlflow-server",
        )  # fmt: skip
        wait_until(lambda: healthy(server), timeout=300, what=f"{server} healthy")
        url = "http://" + docker("port", server, "5000").split()[0]

        http = http_session(admin_auth)
        name = f"team-db-{tag}"

        def post(endpoint: str, body: dict) -> dict:
            response = http.post(f"{url}/api/2.0/mlflow/{endpoint}", json=body, timeout=30)
            assert response.status_code == 200, f"{endpoint}: {response.status_code} {response.text[:500]}"
            return response.json()

        experiment_id = post("experiments/create", {"name": name})["experiment_id"]
        run_id = post("runs/create", {"experiment_id": experiment_id, "start_time": 0})["run"]["info"][
            "run_id"
        ]
        post("runs/log-metric", {"run_id": run_id, "key": "rmse", "value": 0.25, "timestamp": 0, "step": 3})

        assert team_psql(
            f"SELECT e.name, m.key, m.value, m.step FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            f"JOIN experiments e ON e.experiment_id = r.experiment_id WHERE m.run_uuid = '{run_id}'",
            TEAM_DB["MLFLOW_DB_NAME"],
        ) == [f"{name}|rmse|0.25|3"]
        # The admin logged in against the user store on the team's server, created by mlflow-migrate.
        assert team_psql("SELECT username FROM users WHERE is_admin", TEAM_DB["MLFLOW_AUTH_DB_NAME"]) == [
            "admin"
        ]
        # Every connection of the role is encrypted (MLFLOW_DB_SSLMODE=require), and there are some.
        assert (
            team_psql(
                "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                f"WHERE a.usename = '{TEAM_DB['MLFLOW_DB_USER']}'",
                "postgres",
            )[0].split("|")[1]
            == "t"
        )
        # ... and none of it in the bundled postgres.
        assert stack.psql(f"SELECT count(*) FROM runs WHERE run_uuid = '{run_id}'") == [["0"]]
        assert stack.psql(f"SELECT count(*) FROM experiments WHERE name = '{name}'") == [["0"]]
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", server, team_pg], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", team_pg], capture_output=True, check=False)


def test_with_an_external_database_no_bundled_postgres_starts_and_backup_refuses(stack, tmp_path):
    """`stack`: for its images only (a missing image is built even for a service Compose then does
    not start)."""
    env_file = tmp_path / "external.env"
    env_file.write_text(
        stack.env_file.read_text() + "WORKBENCH_BUNDLED_POSTGRES=0\nMLFLOW_DB_HOST=db.example.com\n"
    )
    base = ["docker", "compose", "-p", f"wbext{uuid.uuid4().hex[:6]}", "-f", str(REPO / "docker-compose.yml")]
    compose = [*base, "--env-file", str(env_file)]

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*args], capture_output=True, text=True, timeout=300, **kwargs)

    config = json.loads(run(*compose, "config", "--format", "json", check=True).stdout)["services"]
    assert config["postgres"]["scale"] == 0
    for service in ("mlflow-migrate", "mlflow-server"):
        assert config[service]["environment"]["MLFLOW_DB_HOST"] == "db.example.com", service
        assert config[service]["depends_on"]["postgres"]["required"] is False, service
    # The default (no setting, as plain `docker compose up` on a fresh clone) keeps it.
    default = json.loads(
        run(*base, "--env-file", "/dev/null", "config", "--format", "json", check=True).stdout
    )
    assert default["services"]["postgres"].get("scale", 1) == 1
    try:
        # Named on the command line, as `make up` names it: still no container.
        run(*compose, "up", "-d", "--no-deps", "postgres", check=True)
        assert run(*compose, "ps", "-a", "-q", check=True).stdout.strip() == ""
    finally:
        run(*compose, "down", "--volumes", "--remove-orphans")

    backups = tmp_path / "backups"
    refused = run(
        str(REPO / "scripts" / "backup.sh"),
        str(backups),
        env={**os.environ, "WORKBENCH_COMPOSE": " ".join(compose)},
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert "make backup dumps the bundled postgres only, and wrote nothing" in refused.stderr
    assert not list(backups.glob("*"))
