#!/usr/bin/env bash
# Prints where the running workbench answers and where its credentials are.
set -Euo pipefail
project="${1:-workbench}"
url() { # service port -> http://address:port of the published port, or empty
	local hostport
	hostport="$(docker compose -p "$project" port "$1" "$2" 2>/dev/null | head -n1)" || return 0
	[[ -n "$hostport" ]] && printf '%s' "$hostport"
}
mlflow="$(url mlflow-server 5000)"; jupyter="$(url jupyter 8888)"; portainer="$(url portainer 9443)"
echo
echo "The workbench is up:"
[[ -n "$mlflow" ]] && echo "  MLflow UI + API   http://$mlflow            user admin"
# Replicas (MLFLOW_SERVER_REPLICAS): the port above is the first one's; the team URL below has all.
replicas="$(docker compose -p "$project" ps -q mlflow-server 2>/dev/null | wc -l)" || replicas=1
((replicas > 1)) && echo "                    (replica 1 of $replicas; make ps lists each one's port)"
[[ -n "$jupyter" ]] && echo "  JupyterLab        http://$jupyter/lab        token required"
if [[ -n "$portainer" ]]; then echo "  Portainer         https://$portainer          user admin"
else echo "  Portainer         not running (see the warning above)"; fi
# Team mode (team-gateway/README.md): the names the team types.
gateway="$(docker compose -p "$project" ps -q team-gateway 2>/dev/null | head -n1)" || gateway=""
if [[ -n "$gateway" ]]; then
	name="$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$gateway" | sed -n 's/^WORKBENCH_PUBLIC_NAME=//p')"
	port="$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$gateway" | sed -n 's/^WORKBENCH_TEAM_HTTPS_PORT=//p')"
	[[ "$port" == 443 ]] && port="" || port=":$port"
	echo "  Team mode (TLS)   https://mlflow.$name$port   https://jupyter.$name$port/lab"
	echo "                    plain ports above: this host only; clients trust team-gateway/local-ca/ca.pem or your CA"
fi
echo
if [[ -f .env ]] && grep -q "^MLFLOW_ADMIN_PASSWORD='" .env; then
	echo "Credentials: in .env (MLFLOW_ADMIN_PASSWORD, JUPYTER_TOKEN, PORTAINER_ADMIN_PASSWORD); or: make credentials"
else
	echo "Credentials: make credentials"
fi
