#!/usr/bin/env bash
# mlflow-server's entrypoint. Reads the secrets from files, builds the store URIs and the
# basic-auth config from them (only this process and its children ever see them: nothing lands
# in the compose file, the image or `docker inspect`), then execs the server, which reads every
# setting from its MLFLOW_* variables. `entrypoint.sh migrate` runs the one-shot schema
# migration instead (the mlflow-migrate service, migrate.py); `entrypoint.sh gc`, MLflow's
# garbage collection of deleted runs and experiments (make gc, gc.py); `entrypoint.sh audit`, the
# audit trail (make audit, server-app/workbench_audit.py).
set -Eeo pipefail
# shellcheck source=../base/bin/file-env.sh
source /usr/local/bin/file-env.sh

_setup_env() {
	file_env MLFLOW_DB_PASSWORD
	file_env FTPD_PASSWORD
	file_env MLFLOW_AUTH_ADMIN_PASSWORD
	file_env MLFLOW_FLASK_SERVER_SECRET_KEY
	# MLflow's two databases: on the bundled postgres service by default, or on a team's own
	# PostgreSQL (MLFLOW_DB_*; docs/operations.md, "External database").
	local db_name="${MLFLOW_DB_NAME:-mlflow}"
	local auth_db_name="${MLFLOW_AUTH_DB_NAME:-${db_name}_auth}"
	local db_host="${MLFLOW_DB_HOST:-postgres}:${MLFLOW_DB_PORT:-5432}"
	local db_user db_pw ftp_pw
	db_user="$(urlencode "${MLFLOW_DB_USER:-mlflow}")"
	db_pw="$(urlencode "$MLFLOW_DB_PASSWORD")"
	ftp_pw="$(urlencode "$FTPD_PASSWORD")"
	# postgresql+psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
	export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://${db_user}:${db_pw}@${db_host}/${db_name}"
	export MLFLOW_ARTIFACTS_DESTINATION="ftp://${FTPD_USER:-mlflow}:${ftp_pw}@${FTPD_HOST:-ftpd}:${FTPD_PORT:-21}/artifacts"
	export MLFLOW_SERVE_ARTIFACTS=true
	AUTH_DATABASE_URI="postgresql+psycopg2://${db_user}:${db_pw}@${db_host}/${auth_db_name}"
	# TLS to the database: libpq's own variables, which psycopg2 (every connection of the server)
	# and migrate.py's pg_dump both read. verify-ca and verify-full check the server's certificate
	# against the image's trust store, which holds the extra CA certificates (base/README.md).
	if [[ -n "${MLFLOW_DB_SSLMODE:-}" ]]; then
		export PGSSLMODE="$MLFLOW_DB_SSLMODE"
		if [[ "$MLFLOW_DB_SSLMODE" == verify-* ]]; then
			export PGSSLROOTCERT="${PGSSLROOTCERT:-/etc/ssl/certs/ca-certificates.crt}"
		fi
	fi
	unset MLFLOW_DB_PASSWORD FTPD_PASSWORD
}

# The basic-auth app's config: its user store in Postgres (not SQLite in the working dir).
# Written to a tmpfs, readable by this user only; the admin password is passed through the
# environment of this process only (MLFLOW_AUTH_ADMIN_PASSWORD) and used on the first start.
_write_auth_config() {
	local dir="${MLFLOW_RUNTIME_DIR:-/run/mlflow}"
	export MLFLOW_AUTH_CONFIG_PATH="$dir/basic_auth.ini"
	(
		umask 077
		cat >"$MLFLOW_AUTH_CONFIG_PATH" <<-INI
			[mlflow]
			default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
			database_uri = ${AUTH_DATABASE_URI//%/%%}
			admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
			authorization_function = mlflow.server.auth:authenticate_request_basic_auth
			grant_default_workspace_access = false
			auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-0}
		INI
	)
	unset AUTH_DATABASE_URI
}

# /tmp is the mlflow-server-scratch volume (staged downloads), shared by every replica: each
# works in /tmp/<its hostname> (TMPDIR) and holds /tmp/<hostname>.lock for its life (flock on an
# fd the server inherits). At start, what no running replica holds is what a server stopped in
# the middle of a download left: a folder whose lock is free, or anything without a lock.
_scratch() {
	local own="/tmp/${HOSTNAME:?}" entry
	exec {scratch_lock}>"$own.lock"
	flock -n "$scratch_lock"
	for entry in /tmp/*; do
		[[ -e "$entry" && "$entry" != "$own" && "$entry" != "$own.lock" ]] || continue
		if [[ "$entry" == *.lock ]]; then
			if flock -n "$entry" true; then rm -rf "${entry%.lock}" "$entry"; fi
		elif [[ ! -e "$entry.lock" ]]; then
			rm -rf "$entry"
		fi
	done
	rm -rf "$own"
	mkdir "$own"
	export TMPDIR="$own"
}

_main() {
	_setup_env
	_write_auth_config
	if [[ -n "${MLFLOW_EXPOSE_PROMETHEUS:-}" ]]; then mkdir -p "$MLFLOW_EXPOSE_PROMETHEUS"; fi
	if [[ "${1:-}" == migrate ]]; then
		exec python3 /opt/mlflow-server/migrate.py
	fi
	if [[ "${1:-}" == gc ]]; then
		exec python3 /opt/mlflow-server/gc.py
	fi
	if [[ "${1:-}" == audit ]]; then
		exec python3 -m workbench_audit
	fi
	_scratch
	exec "$@"
}

_main "$@"
