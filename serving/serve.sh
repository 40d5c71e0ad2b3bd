#!/usr/bin/env bash
# Serve registered models of a running workbench as Docker containers (serving/README.md).
#
#   serving/serve.sh serve   [MODEL=models:/<name>@<alias>] [PORT=5001] ...
#   serving/serve.sh image   [MODEL=...] [NETWORK=...]    (only the model's image; its facts on stdout)
#   serving/serve.sh stop    [PORT=...] [MODEL=...]       (neither: every model of the project)
#   serving/serve.sh logs    [PORT=...] [MODEL=...]
#   serving/serve.sh ps
#   serving/serve.sh key     NAME=... [MODEL=<registered model name>]   (issue an API key)
#   serving/serve.sh keys                                               (list them, with usage)
#   serving/serve.sh key-revoke NAME=...
#   serving/serve.sh keys-init                                          (the keys' files, once)
#   serving/serve.sh gateway-image                                      (build the gateway's image)
#
# Settings come from the environment (the make targets pass them): PROJECT (workbench), MODEL,
# PORT, REPLICAS (containers of the model behind the gateway, 1; serving again rolls them), WORKERS
# (MLFLOW_MODELS_WORKERS, 2), BIND_ADDRESS (127.0.0.1), SERVE_TIMEOUT (seconds to
# wait for /ping, 300), MEMORY and PIDS (the served container's memory and process limits, 2g and
# 512), REBUILD=1, COMPOSE (docker compose), ENV_FILE (a Compose --env-file), WORKBENCH_VERSION
# (local); the gateway's: WORKBENCH_SERVING_KEYS (on; off: no key needed), RATE_LIMIT (requests
# per key per 10 s, 1000), BODY_LIMIT (10m). Needs nothing on the host but bash, tar and Docker.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

PROJECT="${PROJECT:-workbench}"
MODEL_DEFAULT="models:/diabetes-regressor@champion"
COMPOSE="${COMPOSE:-docker compose}"
WORKBENCH_BASE="workbench/base:${WORKBENCH_VERSION:-local}"
TOOLS_IMAGE="workbench/serving-tools:${WORKBENCH_VERSION:-local}"
LABEL=org.workbench.serving
# The gateway in front of each served model (serving/gateway/): HAProxy, one container per port.
GATEWAY_IMAGE="workbench/gateway:${WORKBENCH_VERSION:-local}"
GATEWAY_LABEL=org.workbench.serving.gateway
# The gateway runs as the haproxy user of its image; its admin socket is on this tmpfs.
GATEWAY_RUN=/run/haproxy
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

# The gateway containers of this project, optionally only those on PORT / for MODEL; -a: stopped too.
gateways() {
	local filters=(--filter "label=$GATEWAY_LABEL=true" --filter "label=org.workbench.project=$PROJECT")
	[[ -n "${PORT:-}" ]] && filters+=(--filter "label=$LABEL.port=$PORT")
	[[ -n "${MODEL:-}" ]] && filters+=(--filter "label=org.workbench.model.uri=$MODEL")
	docker ps "$@" -q "${filters[@]}"
}

compose() { $COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml "$@"; }

# The gateway image (cached: seconds); a rebuild removes the image the tag named before.
build_gateway() {
	local before after
	before="$(docker image inspect -f '{{.Id}}' "$GATEWAY_IMAGE" 2>/dev/null || true)"
	docker build -q -t "$GATEWAY_IMAGE" --build-arg "WORKBENCH_BASE=$WORKBENCH_BASE" serving/gateway >/dev/null 2>"$1" \
		|| { cat >&2 "$1"; die "could not build $GATEWAY_IMAGE"; }
	after="$(docker image inspect -f '{{.Id}}' "$GATEWAY_IMAGE")"
	[[ -z "$before" || "$before" == "$after" ]] || docker image rm "$before" >/dev/null 2>&1 || true
}

keys_volume() {
	local volume="${PROJECT}_serving-keys"
	docker volume inspect "$volume" >/dev/null 2>&1 \
		|| die "no volume $volume: is the workbench (Compose project $PROJECT) up? make up"
	printf '%s' "$volume"
}

# gateway-keys (serving/gateway/) on the keys volume, in a throwaway container: root (the volume's
# files are root's), no network, no capability. Arguments are its argv, never shell text.
keys_tool() {
	docker run --rm -i --network none --user root --cap-drop ALL --read-only \
		--security-opt no-new-privileges:true -v "$(keys_volume):/keys" \
		--entrypoint gateway-keys "$GATEWAY_IMAGE" "$@"
}

# Every running gateway of the project: `gateway-keys ARGS` in it (the runtime API, at once).
each_gateway() {
	local id
	for id in $(PORT='' MODEL='' gateways); do
		docker exec "$id" gateway-keys "$@" >/dev/null \
			|| printf >&2 'warning: %s did not take the change; it reads the file when restarted\n' "$id"
	done
}

check_key_name() {
	[[ "${1:-}" =~ ^[A-Za-z0-9_-]{1,64}$ ]] \
		|| die "NAME='${1:-}' is not a key name: 1-64 letters, digits, - or _ (e.g. make serve-key NAME=alice)"
}

# The jupyter key: issued by the first `make serve` with keys on, its plaintext written for the
# jupyter container only (the jupyter-secrets volume it mounts, /run/secrets/serving-key, uid
# 1000, 0400), through the one-shot secrets-init service, on its stdin. A stack whose secrets
# volume lost it (make clean) gets a new one.
jupyter_key() {
	compose run --rm --no-deps -T secrets-init test -s /secrets/jupyter/serving-key 2>/dev/null && return 0
	say "issuing the key 'jupyter' for JupyterLab (/run/secrets/serving-key there)"
	local out sha
	if keys_tool list | cut -f1 | grep -x jupyter >/dev/null; then  # not -q: no SIGPIPE under pipefail
		sha="$(keys_tool revoke jupyter | sed -n 's/^sha=//p')"
		each_gateway runtime-del "$sha" jupyter
	fi
	out="$(keys_tool add jupyter '*')" || die "could not issue the jupyter key"
	sha="$(sed -n 's/^sha=//p' <<<"$out")"
	sed -n 's/^key=//p' <<<"$out" | compose run --rm --no-deps -T secrets-init sh -c \
		'umask 077 && cat >/secrets/jupyter/.serving-key && chown 1000:100 /secrets/jupyter/.serving-key && chmod 0400 /secrets/jupyter/.serving-key && mv /secrets/jupyter/.serving-key /secrets/jupyter/serving-key' \
		|| die "could not give the jupyter container its key"
	each_gateway runtime-add "$sha" jupyter '*'
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

# A new replica of the image ${r[image]} (cmd_serve's r, model, port, workers, memory, pids): the
# lowest free name <base>-<n>. It starts on no network: the gateway learns of it only once it is
# healthy (join_replica), so no request meets a model still loading. Prints its name.
start_replica() {
	local base="$1" n=1 name
	while docker container inspect "$base-$n" >/dev/null 2>&1; do n=$((n + 1)); done
	name="$base-$n"
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
		--network none \
		-e "MLFLOW_MODELS_WORKERS=$workers" -e UVICORN_ACCESS_LOG=false \
		--health-cmd "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)\"" \
		--health-interval 2s --health-timeout 5s --health-retries 3 --health-start-period 300s \
		--security-opt no-new-privileges:true --log-opt max-size=10m --log-opt max-file=5 \
		"${r[image]}" >/dev/null \
		|| { docker rm -f "$name" >/dev/null 2>&1; die "could not start $name"; }
	printf '%s' "$name"
}

# Waits until the replica answers /ping (its health check), then puts it on the workbench's
# network with the alias serve-<port>-model, which the gateway resolves (a container name can be
# longer than a DNS label, 63, or hold "_", which HAProxy's resolver refuses).
join_replica() {
	local name="$1" deadline=$((SECONDS + timeout)) status
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
		sleep 1
	done
	docker network disconnect none "$name" >/dev/null
	docker network connect --alias "serve-$port-model" "$network" "$name" >/dev/null
	say "$name is healthy and joined the gateway's network"
}

replica_ip() {
	docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"
}

# gateway-replicas (serving/gateway/) in the running gateway: the runtime API, as haproxy.
gateway_replicas() {
	local gateway="$1"
	shift
	docker exec "$gateway" gateway-replicas "$@"
}

# An old replica leaves: drained in the gateway (no new request; those in flight answered),
# stopped (SIGTERM: the scoring server finishes what it holds), removed, and its slot in the
# gateway made ready for the next replica.
retire_replica() {
	local gateway="$1" id="$2" name ip slot=""
	name="$(docker inspect -f '{{.Name}}' "$id" | tr -d /)"
	ip="$(replica_ip "$id" 2>/dev/null || true)"
	if [[ -n "$ip" ]]; then
		slot="$(gateway_replicas "$gateway" drain "$ip")" || printf >&2 'warning: %s was not drained\n' "$name"
	fi
	docker stop -t 30 "$id" >/dev/null 2>&1 || true
	docker rm -f "$id" >/dev/null
	[[ -z "$slot" ]] || gateway_replicas "$gateway" release "$slot" "$ip" || true
	say "$name drained and removed"
}

# The admin password: from ADMIN_PASSWORD_FILE when given (a Swarm deployment's secrets folder,
# swarm/README.md), else read from the secrets volume by the one-shot secrets-init service (root
# there; the volume's files are 0400 for the server's uid).
admin_password() {
	if [[ -n "${ADMIN_PASSWORD_FILE:-}" ]]; then
		cat -- "$ADMIN_PASSWORD_FILE"
	else
		compose run --rm --no-deps -T secrets-init cat /secrets/mlflow-server/mlflow-admin-password
	fi
}

# The image of MODEL, built by the serving tools container on NETWORK (mlflow-server reachable
# there) with `mlflow models build-docker`, unless it exists: writes the results (image=, name=,
# version=, slug=, size=, example=, ...) as key=value lines to the file RESULTS.
build_model_image() {
	local model="$1" network="$2" results="$3"
	say "serving tools image $TOOLS_IMAGE (the first build takes a minute or two)"
	# The context: serving/ and the module it shares with make score; a rebuild leaves no stale image.
	tools/build-image.sh serving "$TOOLS_IMAGE" "$WORKBENCH_BASE" >/dev/null

	# The admin password (admin_password) stays in this shell's memory and reaches the tools
	# container on its stdin: never a command line or `docker inspect`.
	local password
	password="$(admin_password)" || die "could not read the MLflow admin password of project $PROJECT"

	: >"$results"
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
}

cmd_serve() {
	local model="${MODEL:-$MODEL_DEFAULT}" port="${PORT:-5001}" workers="${WORKERS:-2}"
	local bind="${BIND_ADDRESS:-127.0.0.1}" timeout="${SERVE_TIMEOUT:-300}"
	local memory="${MEMORY:-2g}" pids="${PIDS:-512}" replicas_wanted="${REPLICAS:-1}"
	local network="${PROJECT}_frontend"
	local keys="${WORKBENCH_SERVING_KEYS:-on}" rate="${RATE_LIMIT:-1000}" body="${BODY_LIMIT:-10m}"
	# shellcheck disable=SC2015  # die when either test fails
	[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "PORT=$port is not a port number"
	[[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "WORKERS=$workers is not a positive number"
	[[ "$memory" =~ ^[0-9]+(\.[0-9]+)?([kKmMgGtT][iI]?[bB]?)?$ ]] || die "MEMORY=$memory is not a memory size (e.g. 2g, 512m)"
	[[ "$pids" =~ ^[1-9][0-9]*$ ]] || die "PIDS=$pids is not a positive number of processes"
	# 16: the gateway's slots (haproxy.cfg, server-template).
	# shellcheck disable=SC2015  # die when either test fails
	[[ "$replicas_wanted" =~ ^[1-9][0-9]*$ ]] && ((replicas_wanted <= 16)) || die "REPLICAS=$replicas_wanted is not a number of replicas from 1 to 16"
	[[ "$keys" == on || "$keys" == off ]] || die "WORKBENCH_SERVING_KEYS=$keys: on (API keys required) or off"
	[[ "$rate" =~ ^[1-9][0-9]*$ ]] || die "RATE_LIMIT=$rate is not a positive number of requests (per key, per 10 s)"
	[[ "$body" =~ ^([1-9][0-9]*)([kKmMgG]?)$ ]] || die "BODY_LIMIT=$body is not a size (e.g. 10m, 512k)"
	local body_bytes="${BASH_REMATCH[1]}"
	case "${BASH_REMATCH[2]}" in
		k | K) body_bytes=$((body_bytes * 1024)) ;;
		m | M) body_bytes=$((body_bytes * 1024 * 1024)) ;;
		g | G) body_bytes=$((body_bytes * 1024 * 1024 * 1024)) ;;
	esac

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

	results="$(mktemp)"
	trap 'rm -f "$results"' EXIT
	say "gateway image $GATEWAY_IMAGE"
	build_gateway "$results"
	keys_tool init
	[[ "$keys" == off ]] || jupyter_key

	build_model_image "$model" "$network" "$results"

	local -A r=()
	local key value
	while IFS= read -r line; do key="${line%%=*}"; value="${line#*=}"; r[$key]="$value"; done <"$results"
	[[ -n "${r[image]:-}" && -n "${r[size]:-}" ]] || die "the image build did not finish (see above)"

	local base="${PROJECT}-serve-${r[slug]}-v${r[version]}-p${port}"
	local gateway="${PROJECT}-gateway-p${port}"
	local settings
	settings="keys=$keys rate=$rate body=$body_bytes bind=$bind image=$(docker image inspect -f '{{.Id}}' "$GATEWAY_IMAGE")"
	# This port's replicas from before (of this model: another one was refused above).
	local old=()
	mapfile -t old < <(MODEL='' PORT="$port" containers)
	local -a replicas=()
	local i
	if [[ "$(docker inspect -f '{{.State.Running}} {{index .Config.Labels "org.workbench.gateway.settings"}}' "$gateway" 2>/dev/null)" == "true $settings" ]] \
		&& ((${#old[@]})); then
		# A rolling update: the gateway stays, and every new replica joins it (once healthy and
		# up in the gateway) before one old replica leaves it (drained first): start-first, one
		# at a time, so the model keeps answering throughout.
		say "rolling $gateway's ${#old[@]} replica(s) to ${r[what]:-version ${r[version]}}: $replicas_wanted new, one at a time (start-first; the old ones are drained)"
		for ((i = 1; i <= replicas_wanted; i++)); do
			replicas+=("$(start_replica "$base")")
			join_replica "${replicas[-1]}"
			gateway_replicas "$gateway" wait-up "$(replica_ip "${replicas[-1]}")" \
				|| die "${replicas[-1]} did not come up in $gateway; the old replicas still serve"
			((${#old[@]})) || continue
			retire_replica "$gateway" "${old[0]}"
			old=("${old[@]:1}")
		done
		for i in "${old[@]}"; do retire_replica "$gateway" "$i"; done
	else
		((${#old[@]} == 0)) || say "replacing ${#old[@]} replica(s) of port $port (and its gateway)"
		docker rm -f "$gateway" "${old[@]}" >/dev/null 2>&1 || true
		say "starting $replicas_wanted replica(s) of $base ($workers workers each; no port published: the gateway holds it)"
		for ((i = 1; i <= replicas_wanted; i++)); do replicas+=("$(start_replica "$base")"); done
		for i in "${replicas[@]}"; do join_replica "$i"; done
		# The gateway once the model answers: it publishes the port; a port in use fails here,
		# and takes the replicas with it.
		say "starting the gateway $gateway on $bind:$port (API keys $keys, $rate requests per key per 10 s, bodies up to $body)"
		docker run -d --name "$gateway" --restart unless-stopped \
			--read-only --tmpfs "$GATEWAY_RUN:mode=0700,uid=$(docker run --rm --entrypoint id "$GATEWAY_IMAGE" -u),gid=$(docker run --rm --entrypoint id "$GATEWAY_IMAGE" -g)" \
			--cap-drop ALL --security-opt no-new-privileges:true --memory 256m --pids-limit 128 \
			--label "$GATEWAY_LABEL=true" --label "$LABEL.port=$port" --label "org.workbench.project=$PROJECT" \
			--label "org.workbench.model.uri=$model" --label "org.workbench.model.name=${r[name]}" \
			--label "org.workbench.gateway.settings=$settings" \
			--network "$network" --network-alias "serve-$port" -p "$bind:$port:8080" \
			-e "UPSTREAM=serve-$port-model" -e "MODEL_NAME=${r[name]}" -e "WORKBENCH_SERVING_KEYS=$keys" \
			-e "RATE_LIMIT=$rate" -e "BODY_LIMIT_BYTES=$body_bytes" \
			-v "$(keys_volume):/keys:ro" --log-opt max-size=10m --log-opt max-file=5 \
			"$GATEWAY_IMAGE" >/dev/null \
			|| { docker rm -f "$gateway" "${replicas[@]}" >/dev/null 2>&1; die "could not start $gateway (is port $port in use by something else? choose another PORT=)"; }
	fi
	# A rebuilt image leaves the previous build untagged: remove it unless a container uses it.
	[[ -z "${r[replaced]:-}" ]] || docker image rm "${r[replaced]}" >/dev/null 2>&1 || true
	local host="$bind"
	[[ "$host" == 0.0.0.0 || "$host" == "::" ]] && host=127.0.0.1
	local ping
	# Through the gateway (which may still be starting: a few tries).
	for _ in $(seq 30); do
		ping="$(ping_status "$host" "$port")" || true
		[[ "$ping" == *" 200"* ]] && break
		sleep 1
	done
	[[ -n "$ping" ]] || die "${replicas[*]} healthy but their gateway on $host:$port does not answer (make serve-logs PORT=$port)"
	[[ "$ping" == *" 200"* ]] || die "GET http://$host:$port/ping answered '$ping'"
	local name="${replicas[0]}"
	((${#replicas[@]} == 1)) || name="${replicas[*]}"

	local payload="${r[example]:-}"
	[[ -n "$payload" ]] || payload='{"dataframe_split": {"columns": ["..."], "data": [["..."]]}}'
	payload="${payload//\'/\'\\\'\'}"
	# The single quotes below are text of the printed curl, inside an unquoted here-document.
	# shellcheck disable=SC2016
	cat <<EOF

Serving $model (${r[what]:-version ${r[version]} of '${r[name]}'}) at http://$host:$port
  replicas   $name
             (${#replicas[@]}; each: restart unless-stopped, MLFLOW_MODELS_WORKERS=$workers, memory $memory, $pids processes)
  image      ${r[image]}   ${r[size]}

  gateway    $gateway   (API keys $keys, RATE_LIMIT=$rate per key per 10 s, BODY_LIMIT=$body)

Try it$([[ "$keys" == on ]] && printf ' with a key (make serve-key NAME=<you> prints one: KEY=wbk_...)'):
  curl -s http://$host:$port/invocations$([[ "$keys" == on ]] && printf ' -H "Authorization: Bearer $KEY"') -H 'Content-Type: application/json' -d '$payload'
  OpenAPI document: http://$host:$port/openapi.json
  From JupyterLab (notebooks/05-serving-client.ipynb): http://serve-$port:8080$([[ "$keys" == on ]] && printf ' (its key: /run/secrets/serving-key)')
  Metrics (Prometheus, from the workbench's network): http://serve-$port:8405/metrics and /metrics/keys

Logs: make serve-logs PORT=$port    Stop: make serve-stop PORT=$port    All: make serve-ps
EOF
}

# The model's image only (a Swarm deployment serves it: swarm/deploy.sh): its results on stdout.
cmd_image() {
	local model="${MODEL:-$MODEL_DEFAULT}" network="${NETWORK:-${PROJECT}_frontend}"
	results="$(mktemp)"
	trap 'rm -f "$results"' EXIT
	docker network inspect "$network" >/dev/null 2>&1 || die "no network $network: is the workbench (project $PROJECT) up?"
	build_model_image "$model" "$network" "$results" >&2
	grep -E '^(image|name|version|slug|what|size|example)=' "$results"
}

cmd_stop() {
	local ids
	ids="$(containers) $(gateways -a)"
	[[ -n "${ids// /}" ]] || { say "no served model of project $PROJECT${PORT:+ on port $PORT}${MODEL:+ for $MODEL}"; return 0; }
	local id
	for id in $ids; do
		say "removing $(docker inspect -f '{{.Name}}' "$id" | tr -d /) (its image stays: docker image ls workbench-model/*)"
		docker rm -f "$id" >/dev/null
	done
}

cmd_logs() {
	local ids ports
	mapfile -t ids < <(containers)
	((${#ids[@]})) || die "no served model of project $PROJECT${PORT:+ on port $PORT}${MODEL:+ for $MODEL}"
	ports="$(docker inspect -f "{{index .Config.Labels \"$LABEL.port\"}}" "${ids[@]}" | sort -u | wc -l)"
	((ports == 1)) || die "$ports served models: choose one with PORT= (make serve-ps)"
	if ((${#ids[@]} == 1)); then
		docker logs ${FOLLOW:+-f} --tail "${TAIL:-100}" "${ids[0]}"
		return
	fi
	# Several replicas: each one's lines behind its name, followed side by side.
	local id name
	for id in "${ids[@]}"; do
		name="$(docker inspect -f '{{.Name}}' "$id" | tr -d /)"
		docker logs ${FOLLOW:+-f} --tail "${TAIL:-100}" "$id" 2>&1 | sed -u "s|^|$name  |" &
	done
	wait
}

cmd_ps() {
	docker ps -a --filter "label=$LABEL=true" --filter "label=org.workbench.project=$PROJECT" \
		--format 'table {{.Names}}\t{{.Label "org.workbench.model.uri"}}\t{{.Status}}\t{{.Image}}'
	printf '\n'
	docker ps -a --filter "label=$GATEWAY_LABEL=true" --filter "label=org.workbench.project=$PROJECT" \
		--format 'table {{.Names}}\t{{.Label "org.workbench.model.uri"}}\t{{.Status}}\t{{.Ports}}'
}

cmd_key() {
	local name="${NAME:-}" scope="${MODEL:-*}"
	check_key_name "$name"
	[[ "$scope" =~ ^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,127})$ ]] \
		|| die "MODEL='$scope': a registered model's name (letters, digits, . - _), e.g. MODEL=diabetes-regressor; none: every model"
	build_gateway /dev/null
	local out sha key
	out="$(keys_tool add "$name" "$scope")" || exit 1
	key="$(sed -n 's/^key=//p' <<<"$out")"
	sha="$(sed -n 's/^sha=//p' <<<"$out")"
	each_gateway runtime-add "$sha" "$name" "$scope"
	cat <<EOF
API key '$name' for $([[ "$scope" == '*' ]] && printf 'every model' || printf "the model '%s'" "$scope") of project $PROJECT
(shown once; only its sha256 is kept, in the volume ${PROJECT}_serving-keys):

$key

  curl -H "Authorization: Bearer $key" ...      revoke: make serve-key-revoke NAME=$name
EOF
}

cmd_keys() {
	build_gateway /dev/null
	local counts id
	counts="$(mktemp)"
	trap 'rm -f "$counts"' EXIT
	for id in $(PORT='' MODEL='' gateways); do
		docker exec "$id" gateway-keys counts >>"$counts" 2>/dev/null || true
	done
	# keys.tsv's name, scope, created + the counts of every running gateway, summed by name.
	keys_tool list | awk -F '\t' -v counts="$counts" '
		BEGIN {
			while ((getline line < counts) > 0) {
				split(line, c, "\t"); req[c[1]] += c[2]; e4[c[1]] += c[3]; e5[c[1]] += c[4]; refused[c[1]] += c[5]
			}
			printf "%-24s %-28s %-21s %9s %6s %6s %8s\n", "NAME", "MODEL", "CREATED", "REQUESTS", "4XX", "5XX", "REFUSED"
		}
		{ printf "%-24s %-28s %-21s %9d %6d %6d %8d\n", $1, $2, $3, req[$1], e4[$1], e5[$1], refused[$1] }'
}

cmd_key_revoke() {
	check_key_name "${NAME:-}"
	build_gateway /dev/null
	local sha
	sha="$(keys_tool revoke "$NAME" | sed -n 's/^sha=//p')"
	[[ -n "$sha" ]] || exit 1
	each_gateway runtime-del "$sha" "$NAME"
	say "revoked the key '$NAME': refused by every running gateway of project $PROJECT from now on"
}

case "${1:-}" in
	serve) cmd_serve ;;
	image) cmd_image ;;
	stop) cmd_stop ;;
	logs) cmd_logs ;;
	ps) cmd_ps ;;
	key) cmd_key ;;
	keys) cmd_keys ;;
	key-revoke) cmd_key_revoke ;;
	keys-init) build_gateway /dev/null && keys_tool init ;;
	gateway-image) trap 'rm -f "$errors"' EXIT && errors="$(mktemp)" && build_gateway "$errors" ;;
	*) die "usage: $0 serve|image|stop|logs|ps|key|keys|key-revoke|keys-init|gateway-image (settings in the environment, see the top of this file)" ;;
esac
