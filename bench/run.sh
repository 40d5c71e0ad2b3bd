#!/usr/bin/env bash
# make bench: measures the workbench side by side with the plain tutorial setup and the floors, in
# one run, and writes bench/results/<date>.md (also printed).
#   WORKBENCH_COMPOSE="docker compose -p workbench" bench/run.sh
# It runs against a stack of its own, Compose project <project>-bench (its own volumes, ports
# chosen by the system), and removes that stack with its volumes when it ends, also when it fails
# or is interrupted (and at its start, what a killed run left): nothing it creates (experiments,
# runs, models, files) reaches the workbench of <project>, which it never touches.
# Environment: BENCH_REPS (default 3), BENCH_SMALL=1 (a quick run with small counts),
# BENCH_SKIP_STARTUP=1 (do not restart the stack to time start-up), BENCH_SKIP_SERVING=1 (no
# serving figures), BENCH_MODEL=models:/<name>@<alias> (the model to serve, from the running
# workbench <project>; default: the bench's own, bench/register-model.py, in the bench's stack).
# The serving part is bench/serving.sh.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*" >&2; }

# The bench's stack: the compose command given, its project name (-p) with "-bench" appended.
read -r -a given <<<"${WORKBENCH_COMPOSE:-docker compose -p workbench}"
project="" dc=()
for ((i = 0; i < ${#given[@]}; i++)); do
	case "${given[i]}" in
		-p | --project-name) project="${given[++i]}" ;;
		--project-name=*) project="${given[i]#*=}" ;;
		*) dc+=("${given[i]}") ;;
	esac
done
project="${project:-workbench}"
bench_project="$project-bench"
user_dc=("${dc[@]}" -p "$project")
dc+=(-p "$bench_project")
bench_dc=("${dc[@]}" -f docker-compose.yml -f bench/compose.yml --profile bench)
# Its ports: any free one on 127.0.0.1 (the environment outranks .env), beside a running workbench.
export WORKBENCH_BIND_ADDRESS=127.0.0.1 WORKBENCH_MLFLOW_PORT=0 WORKBENCH_JUPYTER_PORT=0 WORKBENCH_PORTAINER_PORT=0
services="postgres ftpd mlflow-server jupyter"
# jupyter registers the bench's model and is part of start-up: left out when neither is measured.
if [[ -n "${BENCH_SKIP_STARTUP:-}" && ( -n "${BENCH_SKIP_SERVING:-}" || -n "${BENCH_MODEL:-}" ) ]]; then
	services="postgres ftpd mlflow-server"
fi

stamp="$(date -u +%Y-%m-%dT%H%MZ)"
work="$(mktemp -d)"
remove_bench_stack() {
	local ids volumes
	# Containers started beside the stack on its networks (serving/serve.sh's, the serving bench's),
	# and the one-off `run --rm bench` a Ctrl-C catches while its own `docker compose run` is still
	# removing it: a volume it holds when `down` runs would stay behind.
	mapfile -t ids < <(docker ps -aq --filter "label=org.workbench.project=$bench_project"
		docker ps -aq --filter "label=com.docker.compose.project=$bench_project" --filter "label=com.docker.compose.oneoff=True")
	((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
	"${bench_dc[@]}" down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
	# Still there if a container held it while `down` ran: removed now that none does. And the
	# serving bench's own (its gateways' keys), which Compose does not know.
	mapfile -t volumes < <(docker volume ls -q --filter "label=com.docker.compose.project=$bench_project"
		docker volume ls -q --filter "label=org.workbench.project=$bench_project")
	((${#volumes[@]} == 0)) || docker volume rm -f "${volumes[@]}" >/dev/null 2>&1 || true
}
finish() {
	local status=$?
	trap - EXIT
	trap '' INT TERM  # a second Ctrl-C does not cut the clean-up short
	step "removing the bench's stack $bench_project with its volumes"
	remove_bench_stack
	rm -rf "$work"
	exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

remove_bench_stack  # what a killed run left
# The machine's load before and after: other work on the same cores makes every figure noisy.
cut -d' ' -f1-3 /proc/loadavg >"$work/load_start"

step "a stack of the bench's own: Compose project $bench_project ($services; removed at the end)"
# shellcheck disable=SC2086
"${dc[@]}" up -d --wait $services >/dev/null 2>&1 || { "${dc[@]}" logs --tail 30 $services >&2; exit 1; }

if [[ -z "${BENCH_SKIP_STARTUP:-}" ]]; then
	step "start-up: down (volumes kept), then up --wait, images built"
	"${dc[@]}" down >/dev/null 2>&1
	start=$(date +%s%N)
	# shellcheck disable=SC2086
	"${dc[@]}" up -d --wait $services >/dev/null 2>&1
	echo "$(( ($(date +%s%N) - start) / 1000000 ))" >"$work/startup_ms"
fi

step "the plain setup: mlflow server defaults on database mlflow_plain, artifacts on FTP"
"${dc[@]}" exec -T postgres psql -U postgres -XAtq -c "CREATE DATABASE mlflow_plain OWNER mlflow"
"${bench_dc[@]}" up -d --wait plain-mlflow >/dev/null 2>&1 || { "${bench_dc[@]}" logs plain-mlflow | tail -30; exit 1; }

step "running bench/bench.py (progress below)"
"${bench_dc[@]}" run --rm -T bench >"$work/results.json" \
	|| { echo "error: bench.py failed (see above)" >&2; exit 1; }

step "memory and processes of both servers (after the load)"
for service in mlflow-server plain-mlflow; do
	id="$("${bench_dc[@]}" ps -q "$service")"
	docker stats --no-stream --format '{{.MemUsage}}' "$id" | cut -d/ -f1 >"$work/mem_$service"
	docker top "$id" -o pid | tail -n +2 | wc -l >"$work/procs_$service"
done

"${bench_dc[@]}" rm -sf plain-mlflow >/dev/null 2>&1

if [[ -z "${BENCH_SKIP_SERVING:-}" ]]; then
	# BENCH_MODEL names a model of the user's workbench: served from there (it registers nothing).
	if [[ -n "${BENCH_MODEL:-}" ]]; then serving_dc=("${user_dc[@]}"); else serving_dc=("${dc[@]}"); fi
	WORKBENCH_COMPOSE="${serving_dc[*]}" bench/serving.sh "$work"
fi

step "image sizes"
python3 bench/image_sizes.py >"$work/images.json"

cut -d' ' -f1-3 /proc/loadavg >"$work/load_end"
mkdir -p bench/results
python3 bench/report.py "$work" "$stamp" | tee "bench/results/$stamp.md"
step "wrote bench/results/$stamp.md"
