#!/usr/bin/env bash
# make bench: measures the running workbench side by side with the plain tutorial setup and the
# floors, in one run, and writes bench/results/<date>.md (also printed).
#   WORKBENCH_COMPOSE="docker compose -p workbench" bench/run.sh
# Environment: BENCH_REPS (default 3), BENCH_SMALL=1 (a quick run with small counts),
# BENCH_SKIP_STARTUP=1 (do not restart the stack to time start-up), BENCH_SKIP_SERVING=1 (no
# serving figures), BENCH_MODEL=models:/<name>@<alias> (the model to serve; default: the bench's
# own, bench/register-model.py). The serving part is bench/serving.sh.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
read -r -a dc <<<"${WORKBENCH_COMPOSE:-docker compose -p workbench}"
bench_dc=("${dc[@]}" -f docker-compose.yml -f bench/compose.yml --profile bench)
step() { printf '==> %s\n' "$*" >&2; }
stamp="$(date -u +%Y-%m-%dT%H%MZ)"
work="$(mktemp -d)"
trap 'rm -rf "$work"; "${bench_dc[@]}" rm -sf plain-mlflow >/dev/null 2>&1 || true' EXIT

"${dc[@]}" exec -T postgres pg_isready -h 127.0.0.1 -q || { echo "error: start the workbench first (make up)" >&2; exit 1; }
# The machine's load before and after: other work on the same cores makes every figure noisy.
cut -d' ' -f1-3 /proc/loadavg >"$work/load_start"

if [[ -z "${BENCH_SKIP_STARTUP:-}" ]]; then
	step "start-up: down (volumes kept), then up --wait, images built"
	services="postgres ftpd mlflow-server jupyter"
	"${dc[@]}" down >/dev/null 2>&1
	start=$(date +%s%N)
	# shellcheck disable=SC2086
	"${dc[@]}" up -d --wait $services >/dev/null 2>&1
	echo "$(( ($(date +%s%N) - start) / 1000000 ))" >"$work/startup_ms"
fi

step "the plain setup: mlflow server defaults on database mlflow_plain, artifacts on FTP"
"${dc[@]}" exec -T postgres psql -U postgres -XAtq -c "DROP DATABASE IF EXISTS mlflow_plain" -c "CREATE DATABASE mlflow_plain OWNER mlflow"
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
	WORKBENCH_COMPOSE="${dc[*]}" bench/serving.sh "$work"
fi

step "image sizes"
python3 bench/image_sizes.py >"$work/images.json"

cut -d' ' -f1-3 /proc/loadavg >"$work/load_end"
mkdir -p bench/results
python3 bench/report.py "$work" "$stamp" | tee "bench/results/$stamp.md"
step "wrote bench/results/$stamp.md"
"${dc[@]}" exec -T postgres psql -U postgres -XAtq -c "DROP DATABASE IF EXISTS mlflow_plain WITH (FORCE)" || true
