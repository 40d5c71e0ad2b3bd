#!/usr/bin/env bash
# The plain setup of the public tutorials, for comparison: `mlflow server` with its defaults,
# credentials in the store URIs, FTP as the default artifact root (clients write to FTP). The URIs
# reach MLflow through the variables its CLI reads (MLFLOW_BACKEND_STORE_URI,
# MLFLOW_DEFAULT_ARTIFACT_ROOT), not its command line, where `ps` on the host would show them.
set -Eeuo pipefail
# shellcheck source=../base/bin/file-env.sh
source /usr/local/bin/file-env.sh
file_env MLFLOW_DB_PASSWORD
file_env FTPD_PASSWORD

# Percent-encoded for a URI's userinfo. The secret goes in on stdin (printf is a builtin): an
# argument of python3 would be on its command line.
encode() {
	printf '%s' "$1" | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))'
}

# Assigned, then exported: `export X="$(encode ...)"` would hide a failed encode from set -e and
# start the server with an empty password in its URI.
MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:$(encode "$MLFLOW_DB_PASSWORD")@postgres:5432/mlflow_plain"
MLFLOW_DEFAULT_ARTIFACT_ROOT="ftp://mlflow:$(encode "$FTPD_PASSWORD")@ftpd:21/plain-artifacts"
export MLFLOW_BACKEND_STORE_URI MLFLOW_DEFAULT_ARTIFACT_ROOT
unset MLFLOW_DB_PASSWORD FTPD_PASSWORD
# `mlflow db upgrade <uri>` in this process: the command takes the URI as an argument only.
python3 -c 'import os
from mlflow.db import upgrade
upgrade.main(args=[os.environ["MLFLOW_BACKEND_STORE_URI"]], prog_name="mlflow db upgrade")'
exec mlflow server --host 0.0.0.0 --port 5000
