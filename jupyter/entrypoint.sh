#!/usr/bin/env bash
# jupyter's entrypoint: writes the MLflow credentials (from the secrets volume) to
# ~/.mlflow/credentials, where every kernel, terminal, `mlflow` command and `docker compose exec`
# finds them (never in `docker inspect`), then execs JupyterLab with its token.
set -Eeo pipefail
# shellcheck source=../base/bin/file-env.sh
source /usr/local/bin/file-env.sh

file_env MLFLOW_TRACKING_PASSWORD
file_env JUPYTER_TOKEN
if [[ -z "$JUPYTER_TOKEN" ]]; then
	echo >&2 "jupyter: JUPYTER_TOKEN(_FILE) is empty; refusing to start JupyterLab without a token"
	exit 1
fi
mkdir -p "$HOME/.mlflow"
(
	umask 077
	# configparser syntax: a literal % is written %%.
	printf '[mlflow]\nmlflow_tracking_username = %s\nmlflow_tracking_password = %s\n' \
		"${MLFLOW_TRACKING_USERNAME:-admin}" "${MLFLOW_TRACKING_PASSWORD//%/%%}" \
		>"$HOME/.mlflow/credentials"
)
unset MLFLOW_TRACKING_PASSWORD
exec "$@"
