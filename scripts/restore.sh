#!/usr/bin/env bash
# make restore FILE=backups/workbench-<stamp>.tar: recreate the workbench from a backup, into
# empty volumes (after `make clean FORCE=1`, or on another machine). Verifies every checksum,
# starts postgres and ftpd with the backup's secrets, restores the databases and the artifact
# tree, then starts everything (mlflow-server's `mlflow db upgrade` migrates an older backup).
# If .env exists, its secrets are set to the backup's (the old file is kept as .env.before-restore).
# An archive encrypted by `make backup AGE_RECIPIENTS_FILE=...` needs AGE_IDENTITY_FILE, a file
# holding one of the matching age identities (or SSH private keys), not passphrase-protected.
#
#   WORKBENCH_COMPOSE="docker compose -p workbench" [AGE_IDENTITY_FILE=key.txt] scripts/restore.sh FILE [SERVICE...]
set -Eeuo pipefail
read -r -a dc <<<"${WORKBENCH_COMPOSE:-docker compose -p workbench}"
# shellcheck source=scripts/backup-age.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-age.sh"
file="${1:?usage: restore.sh FILE [SERVICE...]}"
shift
services=("$@")
step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -f "$file" ]] || die "no such backup: $file"
identity=""
if age_encrypted "$file"; then
	[[ -n "${AGE_IDENTITY_FILE:-}" ]] \
		|| die "$file is encrypted with age: give the file of its identity (private key): make restore FILE=$file AGE_IDENTITY_FILE=path/to/key.txt"
	identity="$(age_key AGE_IDENTITY_FILE)" || exit 1
fi
if [[ -n "$("${dc[@]}" ps -a -q 2>/dev/null)" ]] \
	|| [[ -n "$("${dc[@]}" volumes -q 2>/dev/null)" ]]; then
	die "the workbench still has containers or volumes: restore goes into empty ones. Back up what you have (make backup), then make clean FORCE=1"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "$identity" ]]; then
	step "decrypting and unpacking $file with the identity in $AGE_IDENTITY_FILE"
	age_run "$identity" --decrypt --identity /run/age/key <"$file" | tar -C "$work" -xf - \
		|| die "could not decrypt $file with AGE_IDENTITY_FILE=$AGE_IDENTITY_FILE (age's reason above): is it the identity of one of the backup's recipients?"
else
	step "unpacking $file"
	tar -C "$work" -xf "$file"
fi
folder="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
[[ -f "$folder/manifest.json" ]] || die "$file is not a workbench backup (no manifest.json)"

step "verifying checksums"
python3 - "$folder" <<'PY'
import hashlib, json, sys
from pathlib import Path
folder = Path(sys.argv[1])
manifest = json.loads((folder / "manifest.json").read_text())
for name, meta in manifest["files"].items():
    digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    if digest != meta["sha256"]:
        sys.exit(f"error: {name} is corrupt (sha256 {digest} != {meta['sha256']})")
print(f"==> backup of {manifest['created']}, MLflow {manifest['mlflow']}: {manifest['counts']}",
      file=sys.stderr)
PY

# The backup's secrets become the seeds of the new, empty secrets volumes.
eval "$(python3 - "$folder/secrets.json" <<'PY'
import json, shlex, sys
for name, value in json.load(open(sys.argv[1])).items():
    print(f"export {name.upper().replace('-', '_')}={shlex.quote(value)}")
PY
)"
env_file="${WORKBENCH_ENV_FILE:-.env}"
if [[ -f "$env_file" && -z "${WORKBENCH_RESTORE_KEEP_ENV:-}" ]]; then
	step "setting the backup's secrets in $env_file (old file: $env_file.before-restore)"
	cp -p "$env_file" "$env_file.before-restore"
	python3 - "$folder/secrets.json" "$env_file" <<'PY'
import json, re, sys
secrets = {k.upper().replace("-", "_"): v for k, v in json.load(open(sys.argv[1])).items()}
text = open(sys.argv[2]).read()
for var, value in secrets.items():
    line = f"{var}='{value}'"
    text, n = re.subn(rf"^{var}=.*$", lambda _: line, text, flags=re.M)
    if not n:
        text += line + "\n"
open(sys.argv[2], "w").write(text)
PY
fi

step "starting postgres and ftpd on empty volumes"
"${dc[@]}" up -d --wait postgres ftpd
for db in mlflow mlflow_auth; do
	step "pg_restore $db"
	"${dc[@]}" exec -T postgres pg_restore -U postgres -d "$db" --exit-on-error <"$folder/$db.dump"
done
step "restoring the artifact tree"
"${dc[@]}" exec -T ftpd tar -C /srv/ftp -xf - <"$folder/artifacts.tar"

step "starting the workbench"
"${dc[@]}" up -d --wait "${services[@]}"
step "restored from $file"
