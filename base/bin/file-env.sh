# shellcheck shell=bash
# file_env VAR [DEFAULT]: set VAR from VAR or from the file named by VAR_FILE (the official
# postgres image's convention). Setting both is an error; VAR_FILE is unset once read, so child
# processes never learn where the secret lives.
file_env() {
	local var="$1" def="${2:-}"
	local file_var="${var}_FILE"
	if [[ -n "${!var:-}" && -n "${!file_var:-}" ]]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$file_var"
		exit 1
	fi
	local val="$def"
	if [[ -n "${!var:-}" ]]; then
		val="${!var}"
	elif [[ -n "${!file_var:-}" ]]; then
		[[ -r "${!file_var}" ]] || { printf >&2 'error: %s=%s is not readable\n' "$file_var" "${!file_var}"; exit 1; }
		val="$(<"${!file_var}")"
	fi
	export "$var"="$val"
	unset "$file_var"
}

# urlencode STRING: percent-encode for use inside a URI's userinfo. The string (a password) goes
# to Python on stdin: an argument would show in `ps` for as long as Python runs.
urlencode() {
	printf '%s' "$1" | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))'
}
