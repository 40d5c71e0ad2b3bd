#!/usr/bin/env bash
# The Debian image base/Dockerfile builds FROM (build argument DEBIAN_IMAGE), printed on stdout:
# the official debian:bookworm-slim when it is here or can be pulled, else the air-gapped
# fallback: a minimal Debian root file system built with debootstrap from the apt mirror this
# machine is configured with and `docker import`ed under the workbench's own name,
# workbench/debian-bootstrap:bookworm. Never under the official name: every other project on
# the machine would silently build on it.
#
#   base/bootstrap-debian-image.sh           make sure one exists (pull, else bootstrap: root and
#                                            debootstrap needed); print its name
#   base/bootstrap-debian-image.sh --print   only look (no pull, no bootstrap); print the name
#                                            to build FROM (the official one when neither is here)
set -Eeuo pipefail

official="debian:bookworm-slim"
bootstrap="workbench/debian-bootstrap:bookworm"
rootfs=""
suite="${DEBIAN_SUITE:-bookworm}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
present() { docker image inspect "$1" >/dev/null 2>&1; }

# The mirror comes from the machine's own apt configuration (deb822 first, then one-line).
_apt_mirror() {
	local uri
	uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
	if [[ -z "$uri" ]]; then
		uri="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
	fi
	[[ -n "$uri" ]] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
	printf '%s\n' "$uri"
}

# Workbenches before 2026-12 imported their bootstrap as debian:bookworm-slim: an image of that
# name with no registry digest and "Imported from -" is most likely one of those. Said, not
# changed (it may be the user's own import).
_warn_if_imported() {
	local digests comment
	digests="$(docker image inspect -f '{{len .RepoDigests}}' "$official")"
	comment="$(docker image inspect -f '{{.Comment}}' "$official")"
	if [[ "$digests" == 0 && "$comment" == "Imported from -" ]]; then
		log "warning: $official here was imported, not pulled (an older workbench's bootstrap?):" \
			"every project on this machine builds on it. To keep it under the workbench's name only:" \
			"docker tag $official $bootstrap && docker image rm $official"
	fi
}

_print() {
	if present "$official"; then
		printf '%s\n' "$official"
	elif present "$bootstrap"; then
		printf '%s\n' "$bootstrap"
	else
		printf '%s\n' "$official"
	fi
}

_main() {
	if present "$official"; then
		log "$official is present"
		_warn_if_imported
		printf '%s\n' "$official"
		return 0
	fi
	if docker pull -q "$official" >/dev/null 2>&1; then
		log "pulled $official"
		printf '%s\n' "$official"
		return 0
	fi
	if present "$bootstrap"; then
		log "cannot pull $official: using $bootstrap (the air-gapped fallback, bootstrapped before)"
		printf '%s\n' "$bootstrap"
		return 0
	fi
	log "cannot pull $official: bootstrapping $bootstrap from the Debian archive (air-gapped fallback)"
	command -v debootstrap >/dev/null || die "cannot pull $official and debootstrap is not installed (apt-get install debootstrap), or load the image with docker load"
	[[ "$(id -u)" == 0 ]] || die "cannot pull $official; bootstrapping $bootstrap needs root: sudo $0"

	local mirror
	mirror="$(_apt_mirror)"
	rootfs="$(mktemp -d /tmp/workbench-rootfs.XXXXXX)"
	trap '[[ -n "$rootfs" ]] && rm -rf "$rootfs"' EXIT
	log "debootstrap --variant=minbase $suite from $mirror (about a minute)"
	debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/tmp/workbench-debootstrap.log 2>&1 \
		|| die "debootstrap failed, see /tmp/workbench-debootstrap.log"
	# Same apt sources inside the image as on this machine: the image's apt reaches the same mirror.
	if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
		rm -f "$rootfs/etc/apt/sources.list"
		cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
	fi
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' \
		--change "LABEL org.workbench.debian-bootstrap=\"Debian $suite minbase, debootstrap from this machine's apt mirror (base/bootstrap-debian-image.sh)\"" \
		- "$bootstrap" >/dev/null
	log "imported $bootstrap ($(docker image inspect -f '{{.Size}}' "$bootstrap" | awk '{printf "%.0f MB", $1/1e6}'))"
	printf '%s\n' "$bootstrap"
}

case "${1:-}" in
	--print) _print ;;
	"") _main ;;
	*) die "usage: $0 [--print]" ;;
esac
