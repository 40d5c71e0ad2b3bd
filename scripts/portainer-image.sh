#!/usr/bin/env bash
# Exit 0 when Portainer's image is here or can be pulled; otherwise say why it will be missing.
# Portainer is the one image the workbench does not build: air-gapped machines cannot have it.
set -Euo pipefail
image="portainer/portainer-ce:${PORTAINER_VERSION:-$(sed -n 's/^PORTAINER_VERSION=//p' .env 2>/dev/null || true)}"
image="${image%:}"
docker image inspect "$image" >/dev/null 2>&1 && exit 0
echo "==> pulling $image"
docker pull -q "$image" >/dev/null 2>&1 && exit 0
cat >&2 <<MSG
==> WARNING: Portainer is not started: its image $image is not on this machine and
    cannot be pulled (no registry reachable). Everything else works without it. To add it later,
    on a machine that can pull: docker pull $image && docker save $image -o portainer.tar;
    here: docker load -i portainer.tar && make up
MSG
exit 1
