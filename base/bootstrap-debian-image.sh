#!/usr/bin/env bash
# Air-gapped fallback: provide the Debian base images the workbench builds FROM when they are
# neither present nor pullable. Builds a minimal Debian root file system with debootstrap from
# the apt mirror this machine is configured with, and `docker import`s it.
#
# A machine that can pull never runs the bootstrap: the script first looks for the image, then
# tries `docker pull`, and only then bootstraps (root and debootstrap required).
#
#   base/bootstrap-debian-image.sh [IMAGE]        default IMAGE: debian:bookworm-slim
set -Eeuo pipefail

image="${1:-debian:bookworm-slim}"
rootfs=""
suite="${DEBIAN_SUITE:-bookworm}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

_main() {
	if docker image inspect "$image" >/dev/null 2>&1; then
		log "$image is present"
		return 0
	fi
	log "$image is missing: trying docker pull"
	if docker pull -q "$image" >/dev/null 2>&1; then
		log "pulled $image"
		return 0
	fi
	log "cannot pull $image: bootstrapping it from the Debian archive (air-gapped fallback)"
	command -v debootstrap >/dev/null || die "cannot pull $image and debootstrap is not installed (apt-get install debootstrap), or load the image with docker load"
	[[ "$(id -u)" == 0 ]] || die "cannot pull $image; bootstrapping it needs root: sudo $0 $image"

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
	tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$image" >/dev/null
	log "imported $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

_main "$@"
