#!/usr/bin/env bash
# Serve registered models of a running workbench as Docker containers (serving/README.md).
#
#   serving/serve.sh serve   [MODEL=models:/<name>@<alias>] [PORT=5001] ...
#   serving/serve.sh stop    [PORT=...] [MODEL=...]       (neither: every model of the project)
#   serving/serve.sh logs    [PORT=...] [MODEL=...]
#   serving/serve.sh ps
#
# Settings come from the environment (the make targets pass them): PROJECT (workbench), MODEL,
# PORT, WORKERS (MLFLOW_MODELS_WORKERS, 2), BIND_ADDRESS (127.0.0.1), SERVE_TIMEOUT (seconds to
# wait for /ping, 300), MEMORY and PIDS (the served container's memory and process limits, 2g and
# 512), REBUILD=1, COMPOSE (docker compose), ENV_FILE (a Compose --env-file), WORKBENCH_VERSION
# (local). Needs nothing on the host but bash, tar and Docker.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

PROJECT="${PROJECT:-workbench}"
MODEL_DEFAULT="models:/diabetes-regressor@champion"
COMPOSE="${COMPOSE:-docker compose}"
WORKBENCH_BASE="workbench/base:${WORKBENCH_VERSION:-local}"
TOOLS_IMAGE="workbench/serving-tools:${WORKBENCH_VERSION:-local}"
LABEL=org.workbench.serving
# The served model's user: nobody, which python:*-slim and workbench/base both have. Not root, and
# owning nothing in the image.
MODEL_USER=65534:65534

die() { printf >&2 'error: %s\n' "$*"; exit 1; }
say() { printf '==> %s\n' "$*"; }

# The served-model containers of this project, optionally only those on PORT / of MODEL.
containers() {
	local filters=(--filter "label=$LABEL=true" --filter "label=org.workbench.project=$PROJECT")
	[[ -n "${PORT:-}" ]] && filters+=(--filter "label=$LABEL.port=$PORT")
	[[ -n "${MODEL:-}" ]] && filters+=(--filter "label=org.workbench.model.uri=$MODEL")
	docker ps -a -q "${filters[@]}"
}

docker_socket() {
	local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
	[[ "$host" == unix://* ]] || die "DOCKER_HOST=$host: the tools container needs the engine's Unix socket"
	printf '%s' "${host#unix://}"
}

# GET /ping on host:port with bash alone (no curl on the host needed): prints the status line.
ping_status() {
	local host="$1" port="$2" line
	exec 3<>"/dev/tcp/$host/$port" || return 1
	printf 'GET /ping HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$host" "$port" >&3
	IFS= read -r -t 5 line <&3 || true
	exec 3<&- 3>&-
	printf '%s' "${line%$'\r'}"
}

cmd_serve() {
	local model="${MODEL:-$MODEL_DEFAULT}" port="${PORT:-5001}" workers="${WORKERS:-2}"
	local bind="${BIND_ADDRESS:-127.0.0.1}" timeout="${SERVE_TIMEOUT:-300}"
	local memory="${MEMORY:-2g}" pids="${PIDS:-512}"
	local network="${PROJECT}_frontend"
	# shellcheck disable=SC2015  # die when either test fails
	[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "PORT=$port is not a port number"
	[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "WORKERS=$workers is not a positive number"
	[[ "$memory" =~ ^[0-9]+(\.[0-9]+)?([kKmMgGtT][iI]?[bB]?)?$ ]] || die "MEMORY=$memory is not a memory size (e.g. 2g, 512m)"
	[[ "$pids" =~ ^[1-9][0-9]*$ ]] || die "PIDS=$pids is not a positive number of processes"

	docker network inspect "$network" >/dev/null 2>&1 \
		|| die "no network $network: is the workbench (Compose project $PROJECT) up? make up"
	[[ -n "$($COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml ps -q --status running mlflow-server 2>/dev/null)" ]] \
		|| die "mlflow-server of project $PROJECT is not running: make up"

	# Another model already on this port? (The same model on the same port is replaced below.)
	local other_name other_model
	while read -r other_name other_model; do
		[[ "$other_model" == "$model" ]] && continue
		die "port $port already serves $other_model (container $other_name): choose another PORT= or: make serve-stop PORT=$port"
	done < <(docker ps -a --filter "label=$LABEL=true" --filter "label=$LABEL.port=$port" \
		--format '{{.Names}} {{.Label "org.workbench.model.uri"}}')

	say "serving tools image $TOOLS_IMAGE (the first build takes a minute or two)"
	# The context: serving/ and the module it shares with make score; a rebuild leaves no stale image.
	tools/build-image.sh serving "$TOOLS_IMAGE" "$WORKBENCH_BASE" >/dev/null

	# The admin password, read from the secrets volume by the one-shot secrets-init service
	# (root there; the volume's files are 0400 for the server's uid). It stays in this shell's
	# memory and reaches the tools container on its stdin: never a command line or `docker inspect`.
	local password
	password="$($COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml \
		run --rm --no-deps -T secrets-init cat /secrets/mlflow-server/mlflow-admin-password)" \
		|| die "could not read the MLflow admin password of project $PROJECT"

	results="$(mktemp)"
	trap 'rm -f "$results"' EXIT
	local var proxies=()
	for var in HTTP_PROXY HTTPS_PROXY NO_PROXY FTP_PROXY ALL_PROXY http_proxy https_proxy no_proxy ftp_proxy all_proxy PIP_INDEX_URL; do
		[[ -n "${!var:-}" ]] && proxies+=("$var=${!var}")
	done
	say "building the image of $model (tools container on $network, Docker socket mounted)"
	# The tools container holds the Docker socket, which is root on this machine whatever else is
	# done, so it gets nothing else: no other host path, a read-only root file system, its
	# scratch (the model's download, the build context) in an anonymous volume (on disk: models
	# can be bigger than memory; removed with the container), no capability (root in it still
	# reaches the socket: it owns it), no privilege gain, memory and process limits. It runs as
	# root because a non-root user cannot reach the socket on rootless Docker or Docker Desktop.
	# (":ro" keeps the socket file itself unchanged; the Docker API behind it is not read-only.)
	{ printf 'password=%s\n' "$password"; ((${#proxies[@]})) && printf '%s\n' "${proxies[@]}"; true; } \
		| docker run --rm -i --network "$network" \
			-v "$(docker_socket):/var/run/docker.sock:ro" \
			--read-only -v /tmp -e HOME=/tmp --cap-drop ALL --security-opt no-new-privileges:true \
			--memory 2g --pids-limit 256 \
			-e MLFLOW_TRACKING_URI=http://mlflow-server:5000 -e MLFLOW_TRACKING_USERNAME=admin \
			--label "$LABEL.tools=true" --label "org.workbench.project=$PROJECT" \
			"$TOOLS_IMAGE" --model "$model" --project "$PROJECT" --workbench-base "$WORKBENCH_BASE" \
			${REBUILD:+--rebuild} \
		| while IFS= read -r line; do
			if [[ "$line" == '::serve:: '* ]]; then printf '%s\n' "${line#::serve:: }" >>"$results"
			else printf '%s\n' "$line"; fi
		done
	unset password

	local -A r=()
	local key value
	while IFS= read -r line; do key="${line%%=*}"; value="${line#*=}"; r[$key]="$value"; done <"$results"
	[[ -n "${r[image]:-}" && -n "${r[size]:-}" ]] || die "the image build did not finish (see above)"

	local name="${PROJECT}-serve-${r[slug]}-v${r[version]}-p${port}"
	if docker container inspect "$name" >/dev/null 2>&1; then
		say "replacing the running $name"
		docker rm -f "$name" >/dev/null
	fi
	say "starting $name on $bind:$port ($workers workers)"
	# Hardened like the workbench's services: not root, no capability, no privilege gain, a
	# read-only root file system, memory and process limits. What MLflow's scoring server writes
	# gets a tmpfs (memory, counted in MEMORY): /tmp (HOME, Python's temporary files), nginx's
	# /var/lib/nginx (request bodies over 16 KB, buffered responses) and /var/log/nginx (MLflow
	# links its logs there to the container's stdout and stderr at every start).
	docker run -d --name "$name" --restart unless-stopped \
		--user "$MODEL_USER" -e HOME=/tmp --read-only --tmpfs /tmp \
		--tmpfs "/var/lib/nginx:uid=${MODEL_USER%:*},gid=${MODEL_USER#*:},mode=0700" \
		--tmpfs "/var/log/nginx:uid=${MODEL_USER%:*},gid=${MODEL_USER#*:},mode=0755" \
		--cap-drop ALL --memory "$memory" --pids-limit "$pids" \
		--label "$LABEL=true" --label "$LABEL.port=$port" --label "org.workbench.project=$PROJECT" \
		--label "org.workbench.model.uri=$model" --label "org.workbench.model.name=${r[name]}" \
		--label "org.workbench.model.version=${r[version]}" \
		--network "$network" --network-alias "serve-$port" \
		-p "$bind:$port:8080" -e "MLFLOW_MODELS_WORKERS=$workers" -e UVICORN_ACCESS_LOG=false \
		--health-cmd "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)\"" \
		--health-interval 5s --health-timeout 5s --health-retries 3 --health-start-period 300s \
		--security-opt no-new-privileges:true --log-opt max-size=10m --log-opt max-file=5 \
		"${r[image]}" >/dev/null \
		|| { docker rm -f "$name" >/dev/null 2>&1; die "could not start $name (is port $port in use by something else? choose another PORT=)"; }

	local deadline=$((SECONDS + timeout)) status
	while :; do
		status="$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}} {{.RestartCount}}' "$name")"
		[[ "$status" == "running healthy "* ]] && break
		if [[ "$status" != running* || "${status##* }" != 0 ]]; then
			docker logs --tail 40 "$name" >&2 || true
			die "$name stopped (state, health, restarts: $status); the container is left for a look: make serve-logs PORT=$port, then make serve-stop PORT=$port"
		elif ((SECONDS >= deadline)); then
			docker logs --tail 40 "$name" >&2 || true
			die "$name did not answer /ping within ${timeout}s (SERVE_TIMEOUT); it is left running: make serve-logs PORT=$port, make serve-stop PORT=$port"
		fi
		sleep 2
	done
	# A rebuilt image leaves the previous build untagged: remove it unless a container uses it.
	[[ -z "${r[replaced]:-}" ]] || docker image rm "${r[replaced]}" >/dev/null 2>&1 || true
	local host="$bind"
	[[ "$host" == 0.0.0.0 || "$host" == "::" ]] && host=127.0.0.1
	local ping
	ping="$(ping_status "$host" "$port")" || die "$name is healthy but $host:$port does not answer"
	[[ "$ping" == *" 200"* ]] || die "GET http://$host:$port/ping answered '$ping'"

	local payload="${r[example]:-}"
	[[ -n "$payload" ]] || payload='{"dataframe_split": {"columns": ["..."], "data": [["..."]]}}'
	payload="${payload//\'/\'\\\'\'}"
	# The single quotes below are text of the printed curl, inside an unquoted here-document.
	# shellcheck disable=SC2016
	cat <<EOF

Serving $model (${r[what]:-version ${r[version]} of '${r[name]}'}) at http://$host:$port
  container  $name   (restart unless-stopped, MLFLOW_MODELS_WORKERS=$workers, memory $memory, $pids processes)
  image      ${r[image]}   ${r[size]}

Try it:
  curl -s http://$host:$port/invocations -H 'Content-Type: application/json' -d '$payload'
  OpenAPI document: http://$host:$port/openapi.json
  From JupyterLab (notebooks/05-serving-client.ipynb): http://serve-$port:8080

Logs: make serve-logs PORT=$port    Stop: make serve-stop PORT=$port    All: make serve-ps
EOF
}

cmd_stop() {
	local ids
	ids="$(containers)"
	[[ -n "$ids" ]] || { say "no served model of project $PROJECT${PORT:+ on port $PORT}${MODEL:+ for $MODEL}"; return 0; }
	local id
	for id in $ids; do
		say "removing $(docker inspect -f '{{.Name}}' "$id" | tr -d /) (its image stays: docker image ls workbench-model/*)"
		docker rm -f "$id" >/dev/null
	done
}

cmd_logs() {
	local ids
	mapfile -t ids < <(containers)
	((${#ids[@]})) || die "no served model of project $PROJECT${PORT:+ on port $PORT}${MODEL:+ for $MODEL}"
	((${#ids[@]} == 1)) || die "${#ids[@]} served models: choose one with PORT= (make serve-ps)"
	docker logs ${FOLLOW:+-f} --tail "${TAIL:-100}" "${ids[0]}"
}

cmd_ps() {
	docker ps -a --filter "label=$LABEL=true" --filter "label=org.workbench.project=$PROJECT" \
		--format 'table {{.Names}}\t{{.Label "org.workbench.model.uri"}}\t{{.Status}}\t{{.Ports}}\t{{.Image}}'
}

case "${1:-}" in
	serve) cmd_serve ;;
	stop) cmd_stop ;;
	logs) cmd_logs ;;
	ps) cmd_ps ;;
	*) die "usage: $0 serve|stop|logs|ps (settings in the environment, see the top of this file)" ;;
esac
