#!/usr/bin/env bash
# The scoring container's entry point: give the running uid a user name if it has none, then
# run score.py (the arguments are its arguments).
set -Eeuo pipefail

# score.sh runs the container as the host user's uid:gid, so the output belongs to the user.
# That uid usually has no /etc/passwd entry here, and Hadoop's login code in Spark stops with
# "invalid null input: name" without one. nss_wrapper answers getpwuid() from a passwd file in
# /tmp (a tmpfs) for this process tree: /etc/passwd stays read-only and untouched.
if ! getent passwd "$(id -u)" >/dev/null; then
	printf 'scorer:x:%s:%s:workbench scoring:%s:/usr/sbin/nologin\n' "$(id -u)" "$(id -g)" "$HOME" >/tmp/passwd
	cat /etc/passwd >>/tmp/passwd
	export NSS_WRAPPER_PASSWD=/tmp/passwd NSS_WRAPPER_GROUP=/etc/group
	export LD_PRELOAD=libnss_wrapper.so
fi
exec python3 /opt/scoring/score.py "$@"
