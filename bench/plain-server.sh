#!/usr/bin/env bash
# The plain setup of the public tutorials, for comparison: `mlflow server` with its defaults,
# credentials on the command line, FTP as the default artifact root (clients write to FTP).
set -Eeuo pipefail
source /usr/local/bin/file-env.sh
file_env MLFLOW_DB_PASSWORD
file_env FTPD_PASSWORD
db="postgresql+psycopg2://mlflow:$(urlencode "$MLFLOW_DB_PASSWORD")@postgres:5432/mlflow_plain"
mlflow db upgrade "$db"
exec mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri "$db" \
	--default-artifact-root "ftp://mlflow:$(urlencode "$FTPD_PASSWORD")@ftpd:21/plain-artifacts"
