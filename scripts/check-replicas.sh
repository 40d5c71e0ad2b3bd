#!/usr/bin/env bash
# Refuses an MLFLOW_SERVER_REPLICAS the workbench cannot run, before anything is built or started
# (mlflow-server/README.md, "Replicas"). The values are Compose's own (.env and the environment,
# resolved by `docker compose config`), so make sees what `up` would run:
# - 1 to 4 replicas: the team gateway's MLflow backend has four slots (team-gateway/haproxy.cfg);
# - their database connections at most fit the bundled postgres' max_connections;
# - more than one needs team mode (COMPOSE_PROFILES=team): its gateway is what balances them and
#   checks their health; and WORKBENCH_MLFLOW_PORT=0, as one host port cannot be published by
#   two containers (0: each replica's plain port is an ephemeral one on 127.0.0.1).
# Environment: COMPOSE (the compose command's words) and PROJECT, as the Makefile exports them.
set -Eeuo pipefail
read -r -a compose <<<"${COMPOSE:-docker compose}"
if ! config="$("${compose[@]}" -p "${PROJECT:-workbench}" config --format json 2>&1)"; then
	echo "error: docker compose config failed (MLFLOW_SERVER_REPLICAS must be a whole number, 1 to 4):" >&2
	echo "$config" >&2
	exit 2
fi
CONFIG="$config" python3 - "$(dirname "$0")/../postgres/postgresql.workbench.conf" <<'PY'
import json, os, re, sys
services = json.loads(os.environ["CONFIG"])["services"]
server = services["mlflow-server"]
replicas = int(server.get("scale", 1))
problems = []
if not 1 <= replicas <= 4:
    problems.append(f"MLFLOW_SERVER_REPLICAS={replicas}: 1 to 4 (the team gateway balances at most four)")
if replicas > 1:
    if "team-gateway" not in services:
        problems.append("more than one replica needs team mode (COMPOSE_PROFILES=team and its settings, "
                        "team-gateway/README.md): its gateway balances the replicas and checks their health")
    published = {str(port.get("published", "")) for port in server.get("ports", [])}
    if published - {"0"}:
        port = sorted(published - {"0"})[0]
        problems.append(f"WORKBENCH_MLFLOW_PORT={port}: two containers cannot publish "
                        "one host port; set WORKBENCH_MLFLOW_PORT=0 (each replica an ephemeral port on "
                        "127.0.0.1, make ps lists them; the team reaches all of them at https://mlflow.<name>)")
# Postgres connections (tests/postgres' budget): each worker of each replica holds up to three
# SQLAlchemy engines (tracking, registry, basic auth) of pool + overflow, and the fast path's
# pool; ten stay free for the migrator, backups and a person's psql. The bundled postgres only
# (its max_connections is in postgres/postgresql.workbench.conf); a team's own is theirs to size.
env = server.get("environment", {})
if int(services.get("postgres", {}).get("scale", 1)) > 0:
    max_connections = int(re.search(r"^max_connections\s*=\s*(\d+)", open(sys.argv[1]).read(), re.M)[1])
    per_engine = int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) + int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"])
    per_worker = 3 * per_engine + int(env["WORKBENCH_FAST_PATHS_POOL_SIZE"])
    budget = replicas * int(env["MLFLOW_WORKERS"]) * per_worker
    if budget + 10 > max_connections:
        problems.append(
            f"{replicas} replica(s) x MLFLOW_WORKERS={env['MLFLOW_WORKERS']} x (3 x (MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"
            f" + MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW) + WORKBENCH_FAST_PATHS_POOL_SIZE) = {budget} database "
            f"connections, above postgres' max_connections = {max_connections} less 10: lower them (for 2 "
            "replicas, e.g. MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=3 and MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=2)")
if problems:
    print("error: the tracking server cannot run as configured (mlflow-server/README.md, Replicas):", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)
    sys.exit(2)
if replicas > 1:
    uri = services.get("jupyter", {}).get("environment", {}).get("MLFLOW_TRACKING_URI", "")
    if uri != "http://team-gateway:5000":
        print(f"note: {replicas} tracking servers; JupyterLab uses {uri}, Docker DNS round robin without "
              "health checks: WORKBENCH_MLFLOW_INTERNAL_URL=http://team-gateway:5000 sends it through the gateway")
PY
