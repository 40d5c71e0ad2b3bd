#!/usr/bin/env bash
# make backup: one timestamped archive of the running workbench, taken while it runs:
#   mlflow.dump, mlflow_auth.dump   pg_dump --format=custom of MLflow's two databases
#   artifacts.tar                   the artifact tree of the FTP volume
#   secrets.json                    every secret (restore recreates the same workbench)
#   manifest.json                   checksums, sizes, versions, counts
# The archive holds passwords and password hashes: it is written mode 0600. With
# AGE_RECIPIENTS_FILE (a file of age recipients: public keys, one a line, or SSH public keys) the
# archive is encrypted with age (scripts/backup-age.sh) and named .tar.age; it is never written
# in clear outside this script's private temporary directory.
#
#   WORKBENCH_COMPOSE="docker compose -p workbench" [AGE_RECIPIENTS_FILE=keys.txt] scripts/backup.sh [DIRECTORY]
set -Eeuo pipefail
read -r -a dc <<<"${WORKBENCH_COMPOSE:-docker compose -p workbench}"
# shellcheck source=scripts/backup-age.sh
source "$(dirname "${BASH_SOURCE[0]}")/backup-age.sh"
out_dir="${1:-backups}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
name="workbench-$stamp"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077
mkdir -p "$out_dir" "$work/$name"

step() { printf '==> %s\n' "$*" >&2; }
size() { du -h "$1" | cut -f1; }

# The databases are dumped through the bundled postgres service. A workbench on a team's own
# PostgreSQL (WORKBENCH_BUNDLED_POSTGRES=0) is refused, never half backed up: its databases are
# that server's to back up (docs/operations.md, "External database").
bundled="$("${dc[@]}" config --format json | python3 -c \
	'import json, sys; print(json.load(sys.stdin)["services"]["postgres"].get("scale", 1))')"
if [[ "$bundled" == 0 ]]; then
	echo "error: this workbench keeps MLflow's databases on your own PostgreSQL (WORKBENCH_BUNDLED_POSTGRES=0):" \
		"make backup dumps the bundled postgres only, and wrote nothing. Back up MLflow's two databases" \
		"with that server's own tools (docs/operations.md, \"External database\")." >&2
	exit 1
fi

recipients=""
if [[ -n "${AGE_RECIPIENTS_FILE:-}" ]]; then
	recipients="$(age_key AGE_RECIPIENTS_FILE)"
	# Checked before the backup is taken, not after: age refuses a file that holds no recipient.
	age_run "$recipients" --encrypt --recipients-file /run/age/key </dev/null >/dev/null \
		|| { echo "error: AGE_RECIPIENTS_FILE=$AGE_RECIPIENTS_FILE: age cannot encrypt to it (see above)" >&2; exit 1; }
fi

"${dc[@]}" exec -T postgres pg_isready -h 127.0.0.1 -q \
	|| { echo "error: postgres is not running: start the workbench first (make up)" >&2; exit 1; }

for db in mlflow mlflow_auth; do
	step "pg_dump $db"
	"${dc[@]}" exec -T postgres pg_dump -U postgres --format=custom --compress=6 "$db" >"$work/$name/$db.dump"
	step "  $db.dump: $(size "$work/$name/$db.dump")"
done

step "artifacts from the FTP volume"
"${dc[@]}" exec -T ftpd tar -C /srv/ftp -cf - . >"$work/$name/artifacts.tar"
step "  artifacts.tar: $(size "$work/$name/artifacts.tar") ($(tar -tf "$work/$name/artifacts.tar" | grep -vc '/$') files)"

step "secrets"
"${dc[@]}" run --rm --no-deps -T secrets-init workbench-secrets export >"$work/$name/secrets.json"

step "manifest"
counts="$("${dc[@]}" exec -T postgres psql -U postgres -d mlflow -XAt -c \
	"SELECT json_build_object('experiments', (SELECT count(*) FROM experiments),
	                          'runs', (SELECT count(*) FROM runs),
	                          'metrics', (SELECT count(*) FROM metrics),
	                          'registered_models', (SELECT count(*) FROM registered_models),
	                          'model_versions', (SELECT count(*) FROM model_versions))")"
pg_version="$("${dc[@]}" exec -T postgres postgres --version)"
mlflow_version="$("${dc[@]}" exec -T mlflow-server python3 -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null || echo unknown)"
schema="$("${dc[@]}" exec -T postgres psql -U postgres -d mlflow -XAt -c 'SELECT version_num FROM alembic_version')"
python3 - "$work/$name" "$stamp" "$counts" "$pg_version" "$mlflow_version" "$schema" <<'PY'
import hashlib, json, sys
from pathlib import Path
folder, stamp, counts, pg, mlflow, schema = sys.argv[1:]
files = {}
for path in sorted(Path(folder).iterdir()):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    files[path.name] = {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}
manifest = {"format": 1, "created": stamp, "postgres": pg, "mlflow": mlflow,
            "alembic_version": schema, "counts": json.loads(counts), "files": files}
(Path(folder) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY

archive="$out_dir/$name.tar"
if [[ -n "$recipients" ]]; then
	archive+=".age"
	step "encrypting with age for the recipients in $AGE_RECIPIENTS_FILE"
	partial="$out_dir/.$name.tar.age.partial"
	tar -C "$work" -cf - "$name" \
		| age_run "$recipients" --encrypt --recipients-file /run/age/key >"$partial" \
		|| { rm -f "$partial"; echo "error: encrypting the backup failed; nothing written" >&2; exit 1; }
	mv "$partial" "$archive"
else
	tar -C "$work" -cf "$archive" "$name"
fi
chmod 600 "$archive"
step "wrote $archive ($(size "$archive"), mode 0600): $counts"
echo "$archive"
