#!/usr/bin/env bash
# The workbench on Docker Swarm (swarm/README.md): `docker stack deploy` of the stack swarm/stack.py
# renders from docker-compose.yml, images from a registry the nodes share.
#
#   swarm/deploy.sh up        deploy or update the workbench (stack STACK)
#   swarm/deploy.sh serve     MODEL=models:/<name>@<alias> PORT=5001 REPLICAS=2: a served model
#                             and its gateway (stack STACK-serve-PORT); again: a rolling update
#   swarm/deploy.sh ps        the stacks' services and their tasks
#   swarm/deploy.sh rm        remove the stacks (volumes, secrets' files and registry stay)
#
# Settings from the environment (the make targets pass them): STACK (workbench-swarm),
# ENV_FILE, COMPOSE, WORKBENCH_VERSION, WORKBENCH_SWARM_SECRETS_DIR (swarm/secrets/STACK),
# DEPLOY_TIMEOUT (600 s); from the environment or .env: MLFLOW_SERVER_REPLICAS, WORKBENCH_MLFLOW_PORT,
# WORKBENCH_JUPYTER_PORT (as Compose reads them), WORKBENCH_REGISTRY (the registry's host:port the
# nodes pull from; empty: the workbench's own, started here on WORKBENCH_REGISTRY_BIND:_PORT);
# serve's as serving/serve.sh's (WORKERS, MEMORY, WORKBENCH_SERVING_KEYS, RATE_LIMIT, BODY_LIMIT).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

# The stack's name (STACK; make's PROJECT, the Compose project's, is not it). PROJECT below, as
# serving/serve.sh calls it (the keys' volume <stack>_serving-keys, the labels).
PROJECT="${STACK:-workbench-swarm}"
COMPOSE="${COMPOSE:-docker compose}"
VERSION="${WORKBENCH_VERSION:-local}"
# NAME's value: the environment's, else .env's (ENV_FILE's), else DEFAULT. Read as text, never run.
setting() {
	local name="$1" default="$2" value="${!1:-}" file="${ENV_FILE:-.env}"
	[[ -n "$value" || ! -f "$file" ]] || value="$(sed -n "s/^$name=//p" "$file" | tail -1)"
	value="${value%\"}" value="${value#\"}" value="${value%\'}" value="${value#\'}"
	printf '%s' "${value:-$default}"
}
REGISTRY_PORT="$(setting WORKBENCH_REGISTRY_PORT 5100)"
REGISTRY_BIND="$(setting WORKBENCH_REGISTRY_BIND 127.0.0.1)"
OWN_REGISTRY="$(setting WORKBENCH_REGISTRY '')"
REGISTRY="${OWN_REGISTRY:-127.0.0.1:$REGISTRY_PORT}"
SECRETS_DIR="${WORKBENCH_SWARM_SECRETS_DIR:-swarm/secrets/$PROJECT}"
STATE="swarm/.state/$PROJECT"
TIMEOUT="${DEPLOY_TIMEOUT:-600}"
export SECRETS_DIR PROJECT

die() { printf >&2 'error: %s\n' "$*"; exit 1; }
say() { printf '==> %s\n' "$*"; }

[[ "$PROJECT" =~ ^[a-z0-9][a-z0-9_-]{0,39}$ ]] || die "STACK=$PROJECT: 1-40 lower-case letters, digits, - or _"

manager() {
	[[ "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null)" == "active true" ]] \
		|| die "this Docker engine is not a Swarm manager: make swarm-init (one machine), or on a manager of your swarm (swarm/README.md)"
}

compose() { $COMPOSE -p "$PROJECT" ${ENV_FILE:+--env-file "$ENV_FILE"} -f docker-compose.yml "$@"; }

# The registry the nodes pull from: Debian's docker-registry (swarm/registry/), a container of
# this manager with its data on a volume, unless WORKBENCH_REGISTRY names a team's own.
registry() {
	[[ -z "$OWN_REGISTRY" ]] || return 0
	local name=workbench-registry image="workbench/registry:$VERSION"
	say "registry $REGISTRY (container $name, Debian's docker-registry; volume workbench-registry-data)"
	docker build -q -t "$image" --build-arg "WORKBENCH_BASE=workbench/base:$VERSION" swarm/registry >/dev/null
	if [[ "$(docker inspect -f '{{.Config.Image}} {{.State.Running}}' "$name" 2>/dev/null)" != "$image true" ]]; then
		docker rm -f "$name" >/dev/null 2>&1 || true
		docker run -d --name "$name" --restart unless-stopped -p "$REGISTRY_BIND:$REGISTRY_PORT:5000" \
			-v workbench-registry-data:/var/lib/docker-registry --read-only --cap-drop ALL \
			--security-opt no-new-privileges:true --memory 512m --log-opt max-size=10m --log-opt max-file=3 \
			"$image" >/dev/null
	fi
	for _ in $(seq 30); do
		[[ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" == healthy ]] && return 0
		sleep 1
	done
	die "the registry did not become healthy: docker logs $name"
}

# Tag IMAGE (local) as REGISTRY/IMAGE and push it: layers the registry has are not sent again.
push() {
	local image="$1"
	say "pushing $REGISTRY/$image"
	docker tag "$image" "$REGISTRY/$image"
	docker push -q "$REGISTRY/$image" >/dev/null || die "could not push $REGISTRY/$image"
}

# Deploy STACK from FILE, then wait until each service has all its tasks running (their health
# checks passed: Swarm counts a task with a health check as running once it is healthy) and
# no update is in progress. `docker stack deploy` of Engine 20.10 has no --wait of its own.
deploy_stack() {
	local stack="$1" file="$2" deadline=$((SECONDS + TIMEOUT)) pending next_report=0
	docker stack deploy --prune --resolve-image always -c "$file" "$stack" >/dev/null \
		|| die "docker stack deploy of $stack failed"
	while :; do
		pending="$(docker service ls --filter "label=com.docker.stack.namespace=$stack" \
			--format '{{.Name}} {{.Replicas}}' | awk '{ split($2, r, "/"); if (r[1] != r[2] && $1 !~ /_mlflow-migrate$/) print }')"
		local updating
		updating="$(docker service ls -q --filter "label=com.docker.stack.namespace=$stack" \
			| xargs -r docker service inspect -f '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' \
			| awk '$2 == "updating" || $2 == "rollback_started" { print $1 " " $2 }')"
		[[ -z "$pending$updating" ]] && break
		if ((SECONDS >= deadline)); then
			docker stack ps --no-trunc --filter desired-state=running "$stack" >&2 || true
			die "$stack did not converge within ${TIMEOUT}s (DEPLOY_TIMEOUT): ${pending//$'\n'/, } ${updating//$'\n'/, }"
		fi
		if ((SECONDS >= next_report)); then
			say "waiting for: $(printf '%s\n%s' "$pending" "$updating" | sed '/^$/d' | paste -sd ',' | sed 's/,/, /g')"
			next_report=$((SECONDS + 15))
		fi
		sleep 2
	done
	say "$stack: every service's tasks are running and healthy"
}

# GET URL's status code, with python3 (the manager's), or 000.
status() {
	python3 - "$1" <<-'EOF' 2>/dev/null || echo 000
		import sys, urllib.error, urllib.request
		try:
		    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
		except urllib.error.HTTPError as error:
		    print(error.code)
	EOF
}

# Until URL answers 200 (its service's published port, mode host: a few seconds after the task
# is healthy), for at most 60 s; else the service's logs are where to look.
answers() {
	local url="$1" service="$2" deadline=$((SECONDS + 60))
	until [[ "$(status "$url")" == 200 ]]; do
		((SECONDS < deadline)) || die "$url does not answer 200 (docker service logs $service)"
		sleep 1
	done
}

cmd_up() {
	manager
	local running
	# (container-number: Compose's images carry its project label too, containers only this one.)
	running="$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.container-number)"
	[[ -z "$running" ]] || die "Compose project $PROJECT is running on this engine: its volumes have the stack's names (make down PROJECT=$PROJECT, or choose another STACK=)"
	mkdir -p "$STATE"
	local config="$STATE/compose.json" portainer=()
	compose config --format json >"$config"
	# As `make up` would run them (.env, the environment): the tracking servers and the ports.
	local replicas mlflow_port jupyter_port
	read -r replicas mlflow_port jupyter_port < <(python3 -c '
import json, sys
services = json.load(sys.stdin)["services"]
port = lambda name: services[name]["ports"][0]["published"]
print(services["mlflow-server"].get("scale", 1), port("mlflow-server"), port("jupyter"))' <"$config")
	[[ "$mlflow_port" != 0 && "$jupyter_port" != 0 ]] || die "WORKBENCH_MLFLOW_PORT and WORKBENCH_JUPYTER_PORT: a Swarm publishes fixed ports, not 0"
	registry
	# The edge's image is the served models' gateway's (serving/gateway), which `make build` leaves.
	serving/serve.sh gateway-image
	local image
	for image in postgres ftpd mlflow-server jupyter gateway; do push "workbench/$image:$VERSION"; done
	local portainer_image
	portainer_image="$(python3 -c 'import json, sys; print(json.load(sys.stdin)["services"]["portainer"]["image"])' <"$config")"
	if docker image inspect "$portainer_image" >/dev/null 2>&1; then
		push "$portainer_image"
		portainer=(--portainer)
	else
		say "Portainer left out: its image $portainer_image is not on this machine (docker pull it, then deploy again)"
	fi
	python3 swarm/stack.py secrets <"$config"
	python3 swarm/stack.py workbench --registry "$REGISTRY" --replicas "$replicas" \
		--mlflow-port "$mlflow_port" --jupyter-port "$jupyter_port" "${portainer[@]}" <"$config" >"$STATE/stack.json"
	say "deploying stack $PROJECT ($replicas tracking server(s); $STATE/stack.json)"
	deploy_stack "$PROJECT" "$STATE/stack.json"
	answers "http://127.0.0.1:$mlflow_port/health" "${PROJECT}_edge"
	cat <<-EOF

		The workbench runs on Docker Swarm as stack $PROJECT (make deploy-ps):
		  MLflow      http://<this host>:$mlflow_port    user admin, password in $SECRETS_DIR/mlflow-admin-password
		  JupyterLab  http://<this host>:$jupyter_port   token in $SECRETS_DIR/jupyter-token
		  Serve a registered model: make deploy-serve MODEL=models:/<name>@<alias> PORT=5001 REPLICAS=2
	EOF
}

cmd_serve() {
	manager
	local model="${MODEL:-models:/diabetes-regressor@champion}" port="${PORT:-5001}" replicas="${REPLICAS:-2}"
	local keys="${WORKBENCH_SERVING_KEYS:-on}" rate="${RATE_LIMIT:-1000}" body="${BODY_LIMIT:-10m}"
	# shellcheck disable=SC2015  # die when either test fails
	[[ "$port" =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "PORT=$port is not a port number"
	[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || die "REPLICAS=$replicas is not a number of replicas from 1 to 16"
	[[ "$body" =~ ^([1-9][0-9]*)([kKmM]?)$ ]] || die "BODY_LIMIT=$body is not a size (e.g. 10m, 512k)"
	local body_bytes="${BASH_REMATCH[1]}"
	case "${BASH_REMATCH[2]}" in k | K) body_bytes=$((body_bytes * 1024)) ;; m | M) body_bytes=$((body_bytes * 1024 * 1024)) ;; esac
	docker service inspect "${PROJECT}_mlflow-server" >/dev/null 2>&1 || die "no stack $PROJECT: make deploy first"
	mkdir -p "$STATE"

	# The model's image, built as `make serve` builds it (serving/serve.sh image), then pushed.
	local facts
	facts="$(ADMIN_PASSWORD_FILE="$SECRETS_DIR/mlflow-admin-password" MODEL="$model" \
		NETWORK="${PROJECT}_frontend" serving/serve.sh image)" || die "could not build the image of $model"
	local -A r=()
	local line
	while IFS= read -r line; do r[${line%%=*}]="${line#*=}"; done <<<"$facts"
	# The API keys' volume on this manager, where the gateway runs (make serve-key PROJECT=$PROJECT);
	# keys-init also builds the gateway's image (cached: seconds), pushed next.
	docker volume create "${PROJECT}_serving-keys" >/dev/null
	serving/serve.sh keys-init
	registry
	push "${r[image]}"
	push "workbench/gateway:$VERSION"

	local stack="$PROJECT-serve-$port"
	python3 swarm/stack.py serve --project "$PROJECT" --model "$model" --name "${r[name]}" \
		--image "$REGISTRY/${r[image]}" --gateway-image "$REGISTRY/workbench/gateway:$VERSION" \
		--memory "${MEMORY:-2g}" --port "$port" --replicas "$replicas" --workers "${WORKERS:-2}" \
		--rate-limit "$rate" --body-limit-bytes "$body_bytes" --keys "$keys" >"$STATE/serve-$port.json"
	say "deploying stack $stack: ${r[what]:-version ${r[version]} of ${r[name]}}, $replicas replicas (again: one at a time, start-first)"
	deploy_stack "$stack" "$STATE/serve-$port.json"
	answers "http://127.0.0.1:$port/ping" "${stack}_serve-$port"
	cat <<-EOF

		Serving $model (${r[what]:-version ${r[version]}}) at http://<this host>:$port, $replicas replicas behind the gateway
		(API keys $keys: make serve-key PROJECT=$PROJECT NAME=<you> prints one)
		  curl -s http://127.0.0.1:$port/invocations -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' -d '{"dataframe_split": ...}'
		  Scale: make deploy-serve ... REPLICAS=3 (or docker service scale ${stack}_serve-$port-model=3)
	EOF
}

cmd_ps() {
	local stack
	for stack in $(docker stack ls --format '{{.Name}}' | grep -E "^$PROJECT(-serve-[0-9]+)?$"); do
		printf '%s\n' "stack $stack"
		docker stack services "$stack"
		printf '\n'
	done
}

# Removes STACK and waits until its containers and networks are gone (`docker stack rm` returns
# before), for at most 120 s.
remove_stack() {
	local stack="$1" deadline=$((SECONDS + 120))
	say "removing stack $stack"
	docker stack rm "$stack" >/dev/null
	while [[ -n "$(docker ps -q --filter "label=com.docker.stack.namespace=$stack")$(docker network ls -q --filter "label=com.docker.stack.namespace=$stack")" ]]; do
		((SECONDS < deadline)) || die "stack $stack's containers or networks are still there after 120 s"
		sleep 1
	done
}

cmd_rm() {
	local stacks stack
	stacks="$(docker stack ls --format '{{.Name}}' 2>/dev/null || true)"
	# The served models first: they use the workbench's network.
	for stack in $(grep -E "^$PROJECT-serve-[0-9]+$" <<<"$stacks" || true); do remove_stack "$stack"; done
	if grep -qx -- "$PROJECT" <<<"$stacks"; then
		remove_stack "$PROJECT"
		say "stack $PROJECT removed (its volumes stay: docker volume ls --filter name=${PROJECT}_)"
	else
		say "no stack $PROJECT"
	fi
}

case "${1:-}" in
	up) cmd_up ;;
	serve) cmd_serve ;;
	ps) cmd_ps ;;
	rm) cmd_rm ;;
	*) die "usage: $0 up|serve|ps|rm (settings in the environment, see the top of this file)" ;;
esac
