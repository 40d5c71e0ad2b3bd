#!/usr/bin/env bash
# Score a CSV or Parquet file with a registered model of a running workbench, in a container
# (scoring/README.md). What `make score` runs:
#
#   INPUT=data.csv OUTPUT=predictions.csv [MODEL=models:/<name>@<alias>] [ID=column] \
#       [ENGINE=pandas|spark] [MASTER=local[2]] scoring/score.sh
#
# Settings come from the environment (the make target passes them): MODEL
# (models:/diabetes-regressor@champion), INPUT and OUTPUT (.csv or .parquet; relative paths are
# relative to the directory score.sh is run from: the repository for make; OUTPUT outside the
# repository or in its predictions/ folder), ID (a column; else the input's `id`, else the row
# number), ENGINE (pandas), MASTER (Spark's master URL, local[2]), CHUNK (rows per chunk, 10000),
# MEMORY and PIDS (the container's memory and process limits, 4g and 4096), SPARK_CONF (extra
# "spark.key=value ..." settings), DRIVER_HOST (for a remote cluster: this machine's address as
# the workers reach it; publishes the driver's ports DRIVER_PORT, 7078, and DRIVER_PORT+1),
# PROJECT (workbench), COMPOSE (docker compose), ENV_FILE (a Compose --env-file),
# WORKBENCH_VERSION (local). Needs nothing on the host but bash, tar and Docker.
set -Eeuo pipefail
caller="$PWD"
cd "$(dirname "$0")/.."
REPO="$(pwd -P)"
# The repository's one folder for make score's outputs (git-ignored: predictions/.gitignore).
PREDICTIONS="$REPO/predictions"
# The container's one writable host directory, made next to OUTPUT for this run; removed at exit.
STAGE=""
trap '[[ -z "$STAGE" ]] || rm -rf -- "$STAGE"' EXIT

PROJECT="${PROJECT:-workbench}"
MODEL_DEFAULT="models:/diabetes-regressor@champion"
COMPOSE="${COMPOSE:-docker compose}"
WORKBENCH_BASE="workbench/base:${WORKBENCH_VERSION:-local}"
IMAGE="workbench/scoring:${WORKBENCH_VERSION:-local}"

die() { printf >&2 'error: %s\n' "$*"; exit 1; }
say() { printf '==> %s\n' "$*"; }

# A path as the user meant it: relative to the directory score.sh was run from.
from_caller() { [[ "$1" == /* ]] && printf '%s' "$1" || printf '%s/%s' "$caller" "$1"; }

# The physical directory of an existing directory (symlinks resolved: that is what Docker mounts).
physical_dir() { (cd "$1" 2>/dev/null && pwd -P); }

# The physical path of a directory that may not exist yet: its nearest existing ancestor's
# physical path (symlinks resolved), then the rest as written.
physical_path() {
	local path="$1" rest=""
	while [[ ! -d "$path" ]]; do
		[[ "$(basename "$path")" != .. ]] || return 1
		rest="/$(basename "$path")$rest"
		path="$(dirname "$path")"
	done
	printf '%s%s' "$(physical_dir "$path")" "$rest"
}

# The container sees the input file and its output directory at the same paths as the host, so
# the same paths work on a Spark cluster whose workers mount the same shared storage there.
# Directories the container's own system lives in cannot be mounted over.
check_mountable() {
	local path="$1" what="$2" system
	[[ "$path" != *:* ]] || die "$what is at $path, whose ':' docker run -v cannot mount: rename it"
	for system in / /bin /boot /dev /etc /lib /lib64 /opt /proc /run /sbin /sys /tmp /usr /var; do
		if [[ "$path" == "$system" || ( "$system" != / && "$system" != /tmp && "$path" == "$system"/* ) ]]; then
			die "$what is in $(dirname "$path"), which the scoring container cannot mount at the same path (its own $system): move the file to a directory of its own, e.g. under your home directory"
		fi
	done
}

extension_ok() {
	local lower
	lower="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
	[[ "$lower" == *.csv || "$lower" == *.parquet ]]
}

main() {
	local model="${MODEL:-$MODEL_DEFAULT}" engine="${ENGINE:-pandas}" master="${MASTER:-local[2]}"
	local chunk="${CHUNK:-10000}" memory="${MEMORY:-4g}" pids="${PIDS:-4096}" network="${PROJECT}_frontend"
	[[ -n "${INPUT:-}" && -n "${OUTPUT:-}" ]] \
		|| die "usage: make score INPUT=<file.csv|.parquet> OUTPUT=<file.csv|.parquet> [MODEL=models:/<name>@<alias>] [ID=<column>] [ENGINE=pandas|spark]"
	extension_ok "$INPUT" || die "INPUT=$INPUT: unknown extension; give a .csv or .parquet file"
	extension_ok "$OUTPUT" || die "OUTPUT=$OUTPUT: unknown extension; give a .csv or .parquet file"
	[[ "$engine" == pandas || "$engine" == spark ]] || die "ENGINE=$engine: give pandas or spark"
	[[ "$chunk" =~ ^[1-9][0-9]*$ ]] || die "CHUNK=$chunk is not a positive number of rows"
	[[ "$memory" =~ ^[0-9]+(\.[0-9]+)?([kKmMgGtT][iI]?[bB]?)?$ ]] || die "MEMORY=$memory is not a memory size (e.g. 4g, 512m)"
	[[ "$pids" =~ ^[1-9][0-9]*$ ]] || die "PIDS=$pids is not a positive number of processes"

	local input output in_dir out_dir stage
	input="$(from_caller "$INPUT")"
	[[ -e "$input" ]] || die "INPUT=$INPUT: no such file ($input)"
	[[ -f "$input" ]] || die "INPUT=$INPUT is not a file"
	[[ -r "$input" ]] || die "INPUT=$INPUT is not readable"
	in_dir="$(physical_dir "$(dirname "$input")")"
	input="$in_dir/$(basename "$input")"
	output="$(from_caller "$OUTPUT")"
	out_dir="$(physical_path "$(dirname "$output")")" \
		|| die "OUTPUT=$OUTPUT: '..' after a directory that does not exist; give a plain path"
	# The repository holds .env (every secret) and the code make runs: no output goes there but
	# into predictions/, which git ignores.
	if [[ ( "$out_dir" == "$REPO" || "$out_dir" == "$REPO"/* ) \
		&& "$out_dir" != "$PREDICTIONS" && "$out_dir" != "$PREDICTIONS"/* ]]; then
		die "OUTPUT=$OUTPUT is inside the workbench's repository ($REPO): write it outside, or under predictions/ (git-ignored), e.g. OUTPUT=predictions/$(basename "$output")"
	fi
	mkdir -p "$out_dir" || die "cannot create the directory of OUTPUT=$OUTPUT"
	output="$out_dir/$(basename "$output")"
	[[ "$output" != "$input" ]] || die "OUTPUT is INPUT: give another file for the predictions"
	[[ ! -d "$output" ]] || die "OUTPUT=$OUTPUT is a directory: give a file name"
	[[ -w "$out_dir" ]] || die "the directory of OUTPUT=$OUTPUT ($out_dir) is not writable"
	stage="$out_dir/.$(basename "$output").$$-$RANDOM.d"
	check_mountable "$input" "INPUT"
	check_mountable "$stage" "OUTPUT"

	docker network inspect "$network" >/dev/null 2>&1 \
		|| die "no network $network: is the workbench (Compose project $PROJECT) up? make up"
	[[ -n "$($COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml ps -q --status running mlflow-server 2>/dev/null)" ]] \
		|| die "mlflow-server of project $PROJECT is not running: make up"

	say "scoring image $IMAGE (the first build takes a few minutes: Java, Spark, MLflow)"
	# The context: scoring/ and the module it shares with make serve; a rebuild leaves no stale image.
	tools/build-image.sh scoring "$IMAGE" "$WORKBENCH_BASE" >/dev/null || die "building $IMAGE failed (above)"

	# The admin password, read from the secrets volume by the one-shot secrets-init service
	# (root there; the volume's files are 0400 for the server's uid). It stays in this shell's
	# memory and reaches the container on its stdin: never a command line or `docker inspect`.
	local password
	password="$($COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml \
		run --rm --no-deps -T secrets-init cat /secrets/mlflow-server/mlflow-admin-password)" \
		|| die "could not read the MLflow admin password of project $PROJECT"

	# The container gets two host paths, at the same paths as on the host: the input file alone,
	# read-only, and a new empty directory next to OUTPUT, writable, where it writes the output
	# (and Spark its parts). Nothing else of OUTPUT's directory: score.sh moves the file out.
	STAGE="$stage"
	mkdir "$STAGE" || die "cannot create a directory in $out_dir for the output"
	local mounts=(-v "$input:$input:ro" -v "$STAGE:$STAGE")

	local spark_args=() conf
	for conf in ${SPARK_CONF:-}; do spark_args+=(--conf "$conf"); done
	local ports=()
	if [[ -n "${DRIVER_HOST:-}" ]]; then
		# A remote cluster's executors connect back to the driver (this container): advertise
		# DRIVER_HOST and publish the driver's RPC and block manager ports on it.
		# Published on DRIVER_HOST itself when it is an IPv4 address of this machine, else on
		# every interface (a host name).
		local port="${DRIVER_PORT:-7078}" on=""
		# shellcheck disable=SC2015  # die when either test fails
		[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65535)) || die "DRIVER_PORT=$port is not a port number"
		[[ "$DRIVER_HOST" =~ ^[0-9]+(\.[0-9]+){3}$ ]] && on="$DRIVER_HOST:"
		ports=(-p "$on$port:$port" -p "$on$((port + 1)):$((port + 1))")
		spark_args+=(--conf "spark.driver.host=$DRIVER_HOST" --conf "spark.driver.bindAddress=0.0.0.0"
			--conf "spark.driver.port=$port" --conf "spark.blockManager.port=$((port + 1))")
	fi

	local how="$engine"
	[[ "$engine" == pandas ]] || how="spark on $master"
	say "scoring $input with $model ($how) into $output"
	# The host user's uid:gid, so the output is theirs. Read-only root file system, /tmp a tmpfs
	# (scratch: the model's copy, Spark's local dirs; it counts against MEMORY) that allows exec:
	# the JVM loads the native libraries it unpacks there (snappy-java, for Parquet). No
	# capability, no privilege gain, memory and process limits (PIDS counts threads: Spark's JVM
	# runs many), tini as PID 1 (forwards Ctrl-C, reaps Spark's workers).
	printf 'password=%s\n' "$password" \
		| docker run --rm -i --init --network "$network" --user "$(id -u):$(id -g)" \
			--read-only --tmpfs /tmp:rw,nosuid,nodev,exec --memory "$memory" --pids-limit "$pids" \
			--cap-drop ALL --security-opt no-new-privileges:true \
			--label org.workbench.scoring=true --label "org.workbench.project=$PROJECT" \
			-e MLFLOW_TRACKING_URI=http://mlflow-server:5000 -e MLFLOW_TRACKING_USERNAME=admin \
			"${mounts[@]}" "${ports[@]}" \
			"$IMAGE" --model "$model" --input "$input" --output "$output" --write-in "$STAGE" \
			--id "${ID:-}" --engine "$engine" --master "$master" --chunk "$chunk" "${spark_args[@]}"
	unset password
	[[ -f "$STAGE/$(basename "$output")" ]] || die "the scoring container ended without an output file"
	mv -f -- "$STAGE/$(basename "$output")" "$output" || die "could not move the predictions to $output"
}

main "$@"
