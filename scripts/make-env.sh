#!/usr/bin/env bash
# Creates .env from .env.example on the first `make up`, with a random value for every secret,
# mode 0600. Never overwrites an existing .env. When the workbench's secrets volumes already
# exist (it was started before without .env), the secrets are left empty in .env: the stored
# ones are kept, and `make credentials` prints them.
set -Eeuo pipefail
env_file="${1:-.env}"
[[ -e "$env_file" ]] && exit 0

project="${COMPOSE_PROJECT_NAME:-workbench}"
existing=""
docker volume inspect "${project}_postgres-secrets" >/dev/null 2>&1 && existing=yes

umask 077
while IFS= read -r line; do
	# Secret lines in .env.example look like `NAME=` under a "# secret" marker comment.
	if [[ "$line" =~ ^([A-Z_]+)=$ && -n "${secret_next:-}" && -z "$existing" ]]; then
		printf "%s='%s'\n" "${BASH_REMATCH[1]}" "$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
	else
		printf '%s\n' "$line"
	fi
	secret_next=""
	[[ "$line" == *"(secret)"* ]] && secret_next=yes
done <.env.example >"$env_file"
chmod 600 "$env_file"
if [[ -n "$existing" ]]; then
	echo "created $env_file (mode 0600); the existing workbench keeps its secrets: make credentials"
else
	echo "created $env_file (mode 0600) with random secrets"
fi
