#!/usr/bin/env bash
# Installs the browser the real-browser tests (tests/browser/) drive: Debian's Chromium, at
# /usr/bin/chromium (run as root). Playwright's own browser download cannot work on CI machines
# without internet access to its CDN, so the tests launch this one via executable_path.
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -Eeuo pipefail

log() { printf '==> %s\n' "$*"; }

if [[ -x /usr/bin/chromium ]]; then
	log "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
	exit 0
fi
if ((EUID != 0)); then
	echo "install-browser.sh: run as root (apt-get install chromium)" >&2
	exit 1
fi
log "apt-get install chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
