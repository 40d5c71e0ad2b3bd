# shellcheck shell=bash
# Sourced by backup.sh and restore.sh: age (https://age-encryption.org, Debian bookworm's 1.1.1)
# run in a throwaway container of the ftpd image, which installs it (ftpd/Dockerfile): the host
# needs nothing but Docker, every machine runs the same age, and it runs with no network, a
# read-only root, no capabilities and as the calling user (so it reads the user's 0600 key file).
# Its stdout is the archive (in clear when decrypting): --log-driver none keeps it out of
# Docker's container logs. The key file is bind-mounted read-only; its path never reaches argv
# of anything but `docker run --mount` (a file name, not its content).
#
#   age_run FILE ARGS...   stdin -> stdout through `age ARGS...`, FILE mounted as /run/age/key
#   age_encrypted FILE     true when FILE starts with age's header (binary or armored)

AGE_HEADER="age-encryption.org/v1"
AGE_ARMOR_HEADER="-----BEGIN AGE ENCRYPTED FILE-----"

age_image() {
	# shellcheck disable=SC2154 # dc: the compose command of the script that sources this one
	"${dc[@]}" config --format json ftpd \
		| python3 -c 'import json, sys; print(json.load(sys.stdin)["services"]["ftpd"]["image"])'
}

# age_key VARIABLE: the absolute path of the key file named by the environment variable VARIABLE.
age_key() {
	local name="$1" path="${!1}"
	[[ -f "$path" && -r "$path" ]] || { echo "error: $name=$path: no such readable file" >&2; return 1; }
	path="$(realpath "$path")"
	[[ "$path" != *,* ]] || { echo "error: $name=$path: a path with a comma cannot be mounted" >&2; return 1; }
	printf '%s\n' "$path"
}

age_run() {
	local key="$1" image
	shift
	image="$(age_image)"
	docker image inspect "$image" >/dev/null 2>&1 \
		|| { echo "error: the image $image (which has age) is missing: run make build" >&2; return 1; }
	docker run --rm -i --log-driver none --network none --read-only --cap-drop ALL \
		--security-opt no-new-privileges --user "$(id -u):$(id -g)" \
		--mount "type=bind,source=$key,target=/run/age/key,readonly" \
		--entrypoint age "$image" "$@"
}

age_encrypted() {
	local head
	head="$(head -c 34 "$1" | tr -d '\0')"
	[[ "$head" == "$AGE_HEADER"* || "$head" == "$AGE_ARMOR_HEADER"* ]]
}
