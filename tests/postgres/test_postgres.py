"""postgres: MLflow's database, a least-privilege role, reachable only inside the stack."""

from __future__ import annotations


def test_mlflow_role_is_not_privileged(stack):
    rows = stack.psql(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = 'mlflow'",
        database="postgres",
    )
    assert rows == [["f", "f", "f", "f"]]


def test_mlflow_owns_its_two_databases_only(stack):
    rows = stack.psql(
        "SELECT datname FROM pg_database d JOIN pg_roles r ON d.datdba = r.oid "
        "WHERE r.rolname = 'mlflow' ORDER BY datname",
        database="postgres",
    )
    assert rows == [["mlflow"], ["mlflow_auth"]]


def test_the_basic_auth_users_live_in_postgres(stack):
    assert stack.psql(
        "SELECT username, is_admin FROM users WHERE username = 'admin'", database="mlflow_auth"
    ) == [["admin", "t"]]


def test_mlflow_role_logs_in_over_tcp_with_its_password_only(stack):
    password = stack.read_secret("postgres", "mlflow-db-password")
    # psql takes the password from PGPASSWORD; pass it on stdin to a shell, never on a command line.
    ok = stack.exec(
        "postgres",
        "sh",
        "-c",
        'PGPASSWORD="$(cat)" psql -h 127.0.0.1 -U mlflow -d mlflow -tAc "SELECT current_user"',
        input=password,
    )
    assert ok.stdout.strip() == "mlflow"
    wrong = stack.exec(
        "postgres",
        "sh",
        "-c",
        'PGPASSWORD=wrong psql -h 127.0.0.1 -U mlflow -d mlflow -tAc "SELECT 1"',
        check=False,
    )
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_not_published_on_the_host(stack):
    assert stack.inspect("postgres")["NetworkSettings"]["Ports"].get("5432/tcp") in (None, [])
    assert stack.compose("port", "postgres", "5432", check=False).stdout.strip() in ("", ":0")


def test_healthcheck_goes_over_tcp(stack):
    assert "-h 127.0.0.1" in " ".join(stack.inspect("postgres")["Config"]["Healthcheck"]["Test"])


def test_connection_budget_stays_below_max_connections(stack):
    env = dict(item.split("=", 1) for item in stack.inspect("mlflow-server")["Config"]["Env"])
    workers = int(env["MLFLOW_WORKERS"])
    per_engine = int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) + int(
        env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]
    )
    # Each worker has up to three engines (tracking store, registry store, basic-auth store) and
    # the fast metric path's pool (mlflow-server/server-app).
    budget = workers * (3 * per_engine + int(env["WORKBENCH_FAST_PATHS_POOL_SIZE"]))
    max_connections = int(stack.psql("SHOW max_connections", database="postgres")[0][0])
    # Headroom for the migrator, backups (pg_dump) and a person's psql.
    assert budget + 10 <= max_connections, (budget, max_connections)
    open_now = int(
        stack.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'mlflow'", database="postgres")[0][
            0
        ]
    )
    assert open_now <= budget
