#!/usr/bin/env bash
# The official postgres image's entrypoint, cut to what the workbench uses: on an empty PGDATA,
# initdb with the superuser's password from POSTGRES_PASSWORD_FILE, then run the scripts in
# /docker-entrypoint-initdb.d once against a server that listens only on its Unix socket.
#
# Unlike the official image, initialization is atomic: it happens in "$PGDATA.init" and is
# renamed to $PGDATA only when every init script succeeded. A crash halfway (a killed container,
# a failing script) leaves no half-made cluster behind: the next start simply begins again.
set -Eeo pipefail
# shellcheck source=../base/bin/file-env.sh
source /usr/local/bin/file-env.sh

_setup_env() {
	file_env POSTGRES_PASSWORD
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	export POSTGRES_USER POSTGRES_DB
	DATABASE_ALREADY_EXISTS=
	if [[ -s "$PGDATA/PG_VERSION" ]]; then DATABASE_ALREADY_EXISTS=true; fi
}

_init_database_dir() {
	rm -rf "$PGDATA.init"
	if [[ -z "$POSTGRES_PASSWORD" ]]; then
		echo >&2 "error: the database is uninitialized and POSTGRES_PASSWORD(_FILE) is empty; refusing to create a superuser without a password"
		exit 1
	fi
	PGDATA="$PGDATA.init" initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
		--auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
	# Connections from the stack's network need a password (scram-sha-256); local socket: peer.
	printf 'host all all all scram-sha-256\n' >>"$PGDATA.init/pg_hba.conf"
}

_temp_server_start() {
	pg_ctl -D "$PGDATA.init" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
}

_temp_server_stop() {
	pg_ctl -D "$PGDATA.init" -m fast -w stop >/dev/null
}

_process_init_files() {
	local f
	export PGUSER="$POSTGRES_USER" PGDATABASE=postgres
	if [[ "$POSTGRES_DB" != postgres ]]; then
		psql -v ON_ERROR_STOP=1 -q --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	for f in /docker-entrypoint-initdb.d/*; do
		# The init scripts are found at run time, in the image's docker-entrypoint-initdb.d.
		# shellcheck source=/dev/null
		case "$f" in
			*.sh) echo "$0: running $f"; source "$f" ;;
			*.sql) echo "$0: running $f"; psql -v ON_ERROR_STOP=1 -q -f "$f" ;;
			*) echo "$0: ignoring $f" ;;
		esac
	done
	unset PGUSER PGDATABASE
}

_main() {
	if [[ "${1:-}" == postgres ]]; then
		_setup_env
		if [[ -z "$DATABASE_ALREADY_EXISTS" ]]; then
			echo "$0: empty data directory: initializing"
			_init_database_dir
			_temp_server_start
			_process_init_files
			_temp_server_stop
			mv "$PGDATA.init" "$PGDATA"
			echo "$0: init complete; ready for start up"
		fi
		unset POSTGRES_PASSWORD
	fi
	exec "$@"
}

_main "$@"
