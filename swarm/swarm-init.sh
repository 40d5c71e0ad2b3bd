#!/usr/bin/env bash
# `make swarm-init`: this engine becomes a one-node Swarm manager, advertised on 127.0.0.1 (no
# other machine can join; for that: swarm/README.md, "More than one machine").
set -Eeuo pipefail
state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [[ "$state" == active ]]; then
	echo "==> this engine is already part of a swarm"
	exit 0
fi
# Machine notes: containers of a Compose stack running while the swarm starts (or stops) lost
# Docker's embedded DNS until recreated.
running="$(docker ps -q --filter label=com.docker.compose.project | wc -l)"
if ((running)); then
	echo "warning: $running Compose container(s) are running: recreate them afterwards (make down && make up), their DNS may stop answering" >&2
fi
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
echo "==> one-node swarm: this engine is its manager (docker swarm leave --force undoes it)"
