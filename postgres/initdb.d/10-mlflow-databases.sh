#!/usr/bin/env bash
# Sourced once by docker-entrypoint.sh on an empty data directory (temporary server, socket
# only, as the superuser). Creates MLflow's least-privilege role and its two databases:
#   ${MLFLOW_DB_NAME}       runs, params, metrics, registry  (mlflow db upgrade manages it)
#   ${MLFLOW_DB_NAME}_auth  the basic-auth app's users and permissions
# The role owns these two databases only: no superuser, no CREATEDB, no CREATEROLE.
file_env MLFLOW_DB_PASSWORD
: "${MLFLOW_DB_USER:=mlflow}" "${MLFLOW_DB_NAME:=mlflow}"
if [[ -z "$MLFLOW_DB_PASSWORD" ]]; then
	echo >&2 "error: MLFLOW_DB_PASSWORD(_FILE) is empty"
	exit 1
fi
psql -v ON_ERROR_STOP=1 -q \
	--set role="$MLFLOW_DB_USER" --set pw="$MLFLOW_DB_PASSWORD" \
	--set db="$MLFLOW_DB_NAME" --set authdb="${MLFLOW_DB_NAME}_auth" <<'SQL'
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"role";
CREATE DATABASE :"authdb" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"authdb" FROM PUBLIC;
SQL
echo "created role ${MLFLOW_DB_USER} and databases ${MLFLOW_DB_NAME}, ${MLFLOW_DB_NAME}_auth"
unset MLFLOW_DB_PASSWORD
