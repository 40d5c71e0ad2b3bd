#!/usr/bin/env bash
# The build context of a model tool's image, as a tar on stdout, for `docker build -`:
#
#   tools/image-context.sh serving | docker build -t workbench/serving-tools:local ... -
#
# (tools/build-image.sh runs exactly that for serve.sh and score.sh.)
#
# FOLDER's files (serving/ or scoring/) plus the module both tools share (tools/model_tools.py,
# tools/README.md), so the one copy in tools/ is what each image gets. Needs bash and tar.
set -Eeuo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
folder="${1:?usage: tools/image-context.sh serving|scoring}"
[[ "$folder" == serving || "$folder" == scoring ]] || { printf >&2 'error: %s is not a model tool\n' "$folder"; exit 1; }
exec tar -c --exclude=__pycache__ -C "$repo/$folder" . -C "$repo/tools" model_tools.py
