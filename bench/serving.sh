#!/usr/bin/env bash
# The serving benchmark, part of `make bench` (bench/run.sh calls it with its work folder):
#   bench/serving.sh WORK      writes WORK/serving.json (the figures) and WORK/serving_mem.tsv
#
# 1. the model: BENCH_MODEL (e.g. models:/diabetes-regressor@champion), else the bench's own
#    scikit-learn model, registered once from the jupyter container (bench/register-model.py);
# 2. served the way `make serve` serves it: serving/serve.sh serve with its defaults (builds or
#    reuses the image workbench-model/<name>:<version>; MLflow's container: nginx on 8080 in front
#    of uvicorn, MLFLOW_MODELS_WORKERS=2 at the time of writing), on a free 127.0.0.1 port;
# 3. in containers of that same image (identical libraries), side by side:
#    - the plain setup: `mlflow models serve -m <model> --env-manager local` with its defaults
#      (entry point overridden; `-h 0.0.0.0` is the one change: its default 127.0.0.1 is not
#      reachable from outside its container);
#    - the floor's server: a raw ASGI app on uvicorn answering a fixed body (bench/serving.py bare);
#    - the settings tried for `make serve` (below): serve.sh's options, other environment variables;
# 4. the client (bench/serving.py measure, in that image too, on the host's network, against
#    127.0.0.1 only) measures every target in turn, BENCH_REPS times, and the in-process
#    model.predict; then the memory and processes of each container are read.
# Every container it starts, and the uvloop image it builds, are removed at the end (the model
# image is kept: a later run on the same stack reuses it, and its layers cache the next build).
# Environment: WORKBENCH_COMPOSE, BENCH_MODEL, BENCH_REPS, BENCH_SMALL, BENCH_SKIP_SETTINGS (not the
# settings tried: `make serve`, the plain setup, the floor and the gateway's cost only).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
work="${1:?usage: bench/serving.sh WORK}"
step() { printf '==> %s\n' "$*" >&2; }
die() { printf >&2 'error: %s\n' "$*"; exit 1; }

# serve.sh takes the Compose project, the env file and the compose command separately.
read -r -a dc <<<"${WORKBENCH_COMPOSE:-docker compose -p workbench}"
project="" env_file="" compose=()
for ((i = 0; i < ${#dc[@]}; i++)); do
	case "${dc[i]}" in
		-p | --project-name) project="${dc[++i]}" ;;
		--project-name=*) project="${dc[i]#*=}" ;;
		--env-file) env_file="${dc[++i]}" ;;
		--env-file=*) env_file="${dc[i]#*=}" ;;
		*) compose+=("${dc[i]}") ;;
	esac
done
project="${project:-workbench}"
label="org.workbench.bench.serving"
uvloop_image="workbench-bench/serving-uvloop:$project" uvloop_version=0.23.0 httptools_version=0.9.0

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

serve() {
	PROJECT="$project" COMPOSE="${compose[*]}" ENV_FILE="$env_file" serving/serve.sh "$@"
}

served_port=""
cleanup() {
	local ids
	mapfile -t ids < <(docker ps -aq --filter "label=$label=true" --filter "label=org.workbench.project=$project")
	((${#ids[@]} == 0)) || docker rm -f "${ids[@]}" >/dev/null 2>&1 || true
	mapfile -t ids < <(docker volume ls -q --filter "label=$label=true" --filter "label=org.workbench.project=$project")
	((${#ids[@]} == 0)) || docker volume rm -f "${ids[@]}" >/dev/null 2>&1 || true
	[[ -z "$served_port" ]] || MODEL="" PORT="$served_port" serve stop >/dev/null 2>&1 || true
	docker image rm "$uvloop_image" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup  # leftovers of an interrupted run

# ---- 1. the model ----------------------------------------------------------------------------
model="${BENCH_MODEL:-}"
if [[ -z "$model" ]]; then
	step "serving: the bench's model (registered once from jupyter: bench/register-model.py)"
	model="$("${dc[@]}" exec -T jupyter python3 - <bench/register-model.py 2>"$work/register.log" | tail -1 \
		| python3 -c 'import json, sys; print(json.load(sys.stdin)["uri"])')" \
		|| { cat "$work/register.log" >&2; die "could not register the bench's model"; }
fi

# ---- 2. served as `make serve` serves it -----------------------------------------------------
served_port="$(free_port)"
step "serving: make serve MODEL=$model (serving/serve.sh; builds the image the first time, minutes)"
# Through its gateway, as make serve answers, but without keys and with a rate limit no bench
# reaches: the bench's clients send no key, and measure the serving, not the limits.
WORKBENCH_SERVING_KEYS=off RATE_LIMIT=1000000000 MODEL="$model" PORT="$served_port" serve serve >"$work/serve.log" 2>&1 \
	|| { tail -40 "$work/serve.log" >&2; die "serving/serve.sh serve failed"; }
served="$(docker ps -q --filter label=org.workbench.serving=true --filter "label=org.workbench.project=$project" \
	--filter "label=org.workbench.serving.port=$served_port")"
[[ -n "$served" ]] || die "no served container on port $served_port"
image="$(docker inspect -f '{{.Config.Image}}' "$served")"
# The settings serve.sh gave it (its defaults: the report names them).
docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$served" \
	| grep -E '^(MLFLOW_MODELS_WORKERS|DISABLE_NGINX|UVICORN_[A-Z_]+)=' >"$work/served_env" || true

# ---- 3. the same image: plain, floor, and the settings tried for make serve ------------------
declare -A url=([served]="http://127.0.0.1:$served_port")
declare -A container=([served]="$served")

# ---- 3b. the gateway's cost: one model container, reached directly and through gateways -------
# `direct`: a container of the model's image with the settings serve.sh gave the served replica
# (read from it: bench/container_options.py), published on 127.0.0.1 like the others, and also on
# the stack's frontend network, where two gateways started the way serve.sh starts one (its
# gateway's settings, read the same way) forward to that same container: keys off, and keys on
# with one key of the bench's own. The three differ by the gateway alone. With the alias of two
# more such containers, `direct` is also one of the 3 replicas behind a third gateway (keys off):
# 1 replica (gateway-nokeys) against 3 (replicas-3), the gateway's settings the same.
network="${project}_frontend"
served_gateway="${project}-gateway-p${served_port}"
gateway_image="$(docker inspect -f '{{.Config.Image}}' "$served_gateway")"
keys_volume="$project-bench-serving-keys"
mapfile -t replica_options < <(docker inspect "$served" | python3 bench/container_options.py)
# gateway NAME KEYS UPSTREAM: a gateway like the served one (its RATE_LIMIT out of the bench's
# reach, its BODY_LIMIT) in front of the containers with the alias UPSTREAM, with the bench's keys.
gateway() {
	local options
	mapfile -t options < <(docker inspect "$served_gateway" \
		| python3 bench/container_options.py "UPSTREAM=$3" "WORKBENCH_SERVING_KEYS=$2")
	publish "$1" 8080 "${options[@]}" --network "$network" -v "$keys_volume:/keys:ro" "$gateway_image"
}
# replica NAME ALIAS... : a container of the model's image as serve.sh runs a replica, on the
# frontend network under the aliases given, no port published (as serve.sh's).
replica() {
	local name="$1" alias=()
	shift
	for a in "$@"; do alias+=(--network-alias "$a"); done
	container[$name]="$(docker run -d --name "$project-bench-serving-$name" \
		--label "$label=true" --label "org.workbench.project=$project" \
		"${replica_options[@]}" --network "$network" "${alias[@]}" "$image")"
}
# run NAME CONTAINER_PORT [docker run options...] IMAGE [arguments...]: with serve.sh's security
# and log options (the log driver matters: every access-log line goes through it), published on
# a free 127.0.0.1 port. No health check: it would run Python every 5 s in each of them.
run() {
	local name="$1" cport="$2"
	shift 2
	publish "$name" "$cport" --security-opt no-new-privileges:true --log-opt max-size=10m --log-opt max-file=5 "$@"
}
# publish NAME CONTAINER_PORT [docker run options...] IMAGE [arguments...]: the bench's container,
# published on a free 127.0.0.1 port; every other option the caller's.
publish() {
	local name="$1" cport="$2" port
	shift 2
	port="$(free_port)"
	container[$name]="$(docker run -d --name "$project-bench-serving-$name" \
		--label "$label=true" --label "org.workbench.project=$project" -p "127.0.0.1:$port:$cport" "$@")"
	url[$name]="http://127.0.0.1:$port"
}

step "serving: the gateway's cost: the model direct, through a gateway without and with keys, and 3 replicas"
publish direct 8080 "${replica_options[@]}" --network "$network" \
	--network-alias bench-serving-direct --network-alias bench-serving-replicas "$image"
docker volume create --label "$label=true" --label "org.workbench.project=$project" "$keys_volume" >/dev/null
# One key, issued as serve.sh issues one (gateway-keys in a throwaway container, the volume's
# owner root); it reaches the client in the targets below: a key of a throwaway volume, for
# gateways on 127.0.0.1 that serve the bench's model only, removed at the end with them.
bench_key="$(docker run --rm --network none --user root --cap-drop ALL --read-only \
	--security-opt no-new-privileges:true --label "$label=true" --label "org.workbench.project=$project" \
	-v "$keys_volume:/keys" --entrypoint gateway-keys "$gateway_image" add bench '*' | sed -n 's/^key=//p')"
[[ "$bench_key" == wbk_* ]] || die "could not issue the bench's key (gateway-keys add)"
gateway gateway-nokeys off bench-serving-direct
gateway gateway-keys on bench-serving-direct
replica replica-2 bench-serving-replicas
replica replica-3 bench-serving-replicas
gateway replicas-3 off bench-serving-replicas

step "serving: the plain setup, the floor's bare HTTP server and the settings tried, from $image"
run plain 8080 --entrypoint mlflow "$image" models serve -m /opt/ml/model --env-manager local -h 0.0.0.0 -p 8080
run bare 8080 -v "$PWD/bench:/bench:ro" --entrypoint python "$image" /bench/serving.py bare 8080
# The settings tried for make serve, all through environment variables of MLflow's container:
# - MLFLOW_MODELS_WORKERS: uvicorn's worker processes;
# - DISABLE_NGINX=true: MLflow's container starts uvicorn alone, on port 8000 (not 8080) and on
#   uvicorn's default host 127.0.0.1, so UVICORN_HOST=0.0.0.0 (uvicorn reads its options from
#   UVICORN_* variables) is needed to reach it from outside the container;
# - UVICORN_ACCESS_LOG=false: no access-log line per request (nginx still writes its own).
direct=(-e DISABLE_NGINX=true -e UVICORN_HOST=0.0.0.0)
quiet=(-e UVICORN_ACCESS_LOG=false)
run direct-w1-quiet 8000 "${direct[@]}" "${quiet[@]}" -e MLFLOW_MODELS_WORKERS=1 "$image"
if [[ "${BENCH_SMALL:-}" != 1 && -z "${BENCH_SKIP_SETTINGS:-}" ]]; then
	run direct-w1 8000 "${direct[@]}" -e MLFLOW_MODELS_WORKERS=1 "$image"
	run nginx-w1 8080 -e MLFLOW_MODELS_WORKERS=1 "$image"
	run nginx-w2-quiet 8080 "${quiet[@]}" -e MLFLOW_MODELS_WORKERS=2 "$image"
	run nginx-w4 8080 -e MLFLOW_MODELS_WORKERS=4 "$image"
	run direct-w2 8000 "${direct[@]}" -e MLFLOW_MODELS_WORKERS=2 "$image"
	run direct-w4 8000 "${direct[@]}" -e MLFLOW_MODELS_WORKERS=4 "$image"
	# Not a setting of MLflow's container: uvloop and httptools, the event loop and HTTP parser
	# uvicorn picks by itself when they are installed (uvicorn[standard]) and MLflow's image lacks.
	# Tried in an image built FROM the model's (for make serve it would be a change to
	# serving/model_image.py); left out, with a note, when pip cannot reach PyPI.
	build_args=()
	for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
		[[ -n "${!var:-}" ]] && build_args+=(--build-arg "$var=${!var}")
	done
	index=""
	[[ -n "${PIP_INDEX_URL:-}" ]] && { index="ARG PIP_INDEX_URL"; build_args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL"); }
	if printf 'FROM %s\n%s\nRUN pip install uvloop==%s httptools==%s\n' "$image" "$index" "$uvloop_version" "$httptools_version" \
		| docker build -q --force-rm -t "$uvloop_image" --label "$label=true" "${build_args[@]}" - >"$work/uvloop-build.log" 2>&1; then
		run uvloop-nginx-w2-quiet 8080 "${quiet[@]}" -e MLFLOW_MODELS_WORKERS=2 "$uvloop_image"
		run uvloop-direct-w1-quiet 8000 "${direct[@]}" "${quiet[@]}" -e MLFLOW_MODELS_WORKERS=1 "$uvloop_image"
		run uvloop-direct-w2-quiet 8000 "${direct[@]}" "${quiet[@]}" -e MLFLOW_MODELS_WORKERS=2 "$uvloop_image"
	else
		step "serving: could not build $uvloop_image (pip install uvloop httptools; $work/uvloop-build.log): left out"
	fi
fi

# The targets of the client (bench/serving.py measure): name -> URL; the gateway's cost's four as
# {"url", "group"} (measured back to back in each repetition) and the keys-on gateway's with its
# "key" (sent as Authorization: Bearer).
targets="$(for name in "${!url[@]}"; do
	group="" key=""
	case "$name" in direct | gateway-nokeys | gateway-keys | replicas-3) group=gateway ;; esac
	[[ "$name" != gateway-keys ]] || key="$bench_key"
	printf '%s\t%s\t%s\t%s\n' "$name" "${url[$name]}" "$key" "$group"
done | python3 -c '
import json, sys
targets = {}
for line in sorted(sys.stdin.read().splitlines()):
    name, url, key, group = line.split("\t")
    extra = {k: v for k, v in (("key", key), ("group", group)) if v}
    targets[name] = {"url": url, **extra} if extra else url
print(json.dumps(targets))
')"
python3 - "$targets" <<'EOF' || { for c in "${container[@]}"; do docker logs --tail 20 "$c" >&2; done; die "a server did not answer /ping"; }
import json, sys, time, urllib.request
deadline = time.monotonic() + 300
for name, target in json.loads(sys.argv[1]).items():
    url = target if isinstance(target, str) else target["url"]
    while True:
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=5)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                sys.exit(f"{name} ({url}) did not answer /ping: {e}")
            time.sleep(1)
EOF

# The keys-on gateway checks keys (401 without one), and the 3 replicas are all up in theirs
# (the gateway resolves the alias every second and checks each replica's /ping).
status="$(python3 -c '
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/invocations", data=b"{}", headers={"Content-Type": "application/json"}), timeout=10)
    print(200)
except urllib.error.HTTPError as e:
    print(e.code)
' "${url[gateway-keys]}")"
[[ "$status" == 401 ]] || die "the keys-on gateway answered $status to a request without a key, not 401"
printf 'without a key: %s\n' "$status" >"$work/gateway_check"
for name in direct replica-2 replica-3; do
	docker exec "${container[replicas-3]}" gateway-replicas wait-up \
		"$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "${container[$name]}")" 300 \
		|| die "$name is not up in the replicas-3 gateway"
done
printf 'replicas up: %s\n' "$(docker exec "${container[replicas-3]}" gateway-replicas list | grep -c UP)" >>"$work/gateway_check"

# ---- 4. the client -----------------------------------------------------------------------------
step "serving: measuring $(wc -w <<<"${!url[*]}") servers, 1 and 8 clients, ${BENCH_REPS:-3} repetitions (progress below)"
docker run --rm --name "$project-bench-serving-client" --label "$label=true" \
	--label "org.workbench.project=$project" --network host --security-opt no-new-privileges:true \
	-e BENCH_REPS="${BENCH_REPS:-3}" -e BENCH_SMALL="${BENCH_SMALL:-}" -v "$PWD/bench:/bench:ro" \
	--entrypoint python "$image" /bench/serving.py measure "$targets" >"$work/serving.json" \
	|| die "the serving client failed (see above)"

for name in "${!container[@]}"; do
	printf '%s\t%s\t%s\n' "$name" \
		"$(docker stats --no-stream --format '{{.MemUsage}}' "${container[$name]}" | cut -d/ -f1)" \
		"$(docker top "${container[$name]}" -o pid | tail -n +2 | wc -l)"
done >"$work/serving_mem.tsv"
printf '%s\n' "$image" >"$work/serve_image_name"
