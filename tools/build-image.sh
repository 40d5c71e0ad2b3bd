#!/usr/bin/env bash
# Build a model tool's image the one way make serve and make score do, and leave no stale image:
#
#   tools/build-image.sh serving|scoring IMAGE BASE    # prints the image's id
#
# The context is tools/image-context.sh's; BASE is the workbench's base image; PIP_INDEX_URL (a
# PyPI mirror), if set, is a build argument of the builder stage only (see the Dockerfiles).
# A rebuild (a changed Dockerfile, requirements or base) would leave images behind, a gigabyte
# each: the image IMAGE named before, and, with Docker's classic builder, which keeps every
# stage as an untagged image, the builder stages of earlier builds (labelled
# org.workbench.builder-stage=FOLDER). Both are removed here: the replaced image (unless a
# container still uses it) and every builder stage but the newest, the cache of the next build.
# On failure the builder's output goes to stderr and the exit status is 1.
set -Eeuo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd -P)"
folder="${1:?usage: tools/build-image.sh serving|scoring IMAGE BASE}"
image="${2:?usage: tools/build-image.sh serving|scoring IMAGE BASE}"
base="${3:?usage: tools/build-image.sh serving|scoring IMAGE BASE}"

# One build of an image at a time (two make serve at once, make test's two processes): the second
# waits, then finds every layer cached, instead of building the same layers beside the first and
# removing its image as "replaced". flock(1) is util-linux's; without it (macOS) no waiting. The
# lock file is the user's own (make score runs as the caller's uid: another user's file in /tmp
# would not open for writing).
if command -v flock >/dev/null; then
	exec {lock}>"${TMPDIR:-/tmp}/workbench-build-image-$(id -u)-${image//[^A-Za-z0-9._-]/_}.lock"
	flock "$lock"
fi

id_of() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

before="$(id_of "$image")"
if ! output="$("$repo/tools/image-context.sh" "$folder" | docker build -q -t "$image" \
	--build-arg "WORKBENCH_BASE=$base" --build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-}" - 2>&1)"; then
	printf '%s\n' "$output" >&2
	exit 1
fi
after="$(id_of "$image")"
if [[ -n "$before" && "$before" != "$after" ]]; then
	docker image rm "$before" >/dev/null 2>&1 || true
fi
# Newest first; CreatedAt is "YYYY-MM-DD hh:mm:ss +zone", the engine's one time zone.
mapfile -t stages < <(docker image ls --no-trunc --filter dangling=true \
	--filter "label=org.workbench.builder-stage=$folder" --format '{{.CreatedAt}}	{{.ID}}' | sort -r | cut -f2)
if ((${#stages[@]} > 1)); then
	docker image rm "${stages[@]:1}" >/dev/null 2>&1 || true
fi
printf '%s\n' "$after"
