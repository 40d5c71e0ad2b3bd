"""make backup → make clean FORCE=1 → make restore: every run, metric, model version and
artifact checksum identical, and every row of the audit trail, on a stack of its own; the backup restored is one encrypted with age
(make backup AGE_RECIPIENTS_FILE=…), which holds nothing in clear and restores only with its
identity (make restore AGE_IDENTITY_FILE=…)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

from utils.stack import REPO
from utils.workloads import AUDIT_TRAIL, CREATE, FTP_CHECKSUMS, SNAPSHOT

SERVICES = ["postgres", "ftpd", "mlflow-server", "jupyter"]


def run(command: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=900, **kwargs
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_backup_clean_restore_gives_back_everything(stack_factory, tmp_path):
    stack = stack_factory()
    stack.up(*SERVICES, build=True)
    stack.python("jupyter", CREATE)
    before = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    ftp_before = stack.exec("ftpd", *FTP_CHECKSUMS).stdout
    assert len(before["runs"]) == 2 and len(before["versions"]) == 2
    audit_before = stack.psql(AUDIT_TRAIL)
    assert any(row[4].endswith("/runs/create") for row in audit_before), audit_before[-5:]

    compose = f"docker compose --env-file {stack.env_file} -f {REPO / 'docker-compose.yml'}"
    env = {"WORKBENCH_COMPOSE": f"{compose} -p {stack.project}", "WORKBENCH_RESTORE_KEEP_ENV": "1"}
    backup = run(["scripts/backup.sh", str(tmp_path)], env)
    archive = backup.stdout.strip().splitlines()[-1]
    assert "pg_dump mlflow" in backup.stderr and "artifacts.tar" in backup.stderr  # progress shown
    assert oct(os.stat(archive).st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        names = {os.path.basename(n) for n in tar.getnames()}
    assert {"mlflow.dump", "mlflow_auth.dump", "artifacts.tar", "secrets.json", "manifest.json"} <= names

    # Encrypted with age, run in a container of the ftpd image (the host needs no age): a key
    # pair from age-keygen there, the public key as the recipients file.
    keygen = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "age-keygen",
            stack.inspect("ftpd")["Config"]["Image"],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    identity, recipients = tmp_path / "identity.txt", tmp_path / "recipients.txt"
    identity.write_text(keygen.stdout)
    identity.chmod(0o600)
    recipients.write_text(keygen.stdout.split("# public key: ", 1)[1].split()[0] + "\n")
    (tmp_path / "encrypted").mkdir()
    encrypted = (
        run(
            ["scripts/backup.sh", str(tmp_path / "encrypted")],
            {**env, "AGE_RECIPIENTS_FILE": str(recipients)},
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert encrypted.endswith(".tar.age") and oct(os.stat(encrypted).st_mode & 0o777) == "0o600"
    # What the clear archive holds in clear (a secret, a run's id in the artifact paths), the
    # encrypted one does not.
    known = [
        stack.read_secret("mlflow-server", "mlflow-admin-password").encode(),
        next(iter(before["runs"])).encode(),
    ]
    clear, sealed = open(archive, "rb").read(), open(encrypted, "rb").read()
    assert all(text in clear for text in known)
    assert sealed.startswith(b"age-encryption.org/v1") and not any(text in sealed for text in known)

    # Without the identity, restore says what it needs, before touching anything.
    refused = subprocess.run(
        ["scripts/restore.sh", encrypted, *SERVICES],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        refused.returncode != 0
        and "encrypted with age" in refused.stderr
        and "AGE_IDENTITY_FILE" in refused.stderr
    )

    # The real make target, with its confirmation skipped by FORCE=1.
    run(["make", "clean", "FORCE=1", f"PROJECT={stack.project}", f"COMPOSE={compose}"], env)
    assert stack.compose("volumes", "-q").stdout.strip() == ""

    restored = run(["scripts/restore.sh", encrypted, *SERVICES], {**env, "AGE_IDENTITY_FILE": str(identity)})
    assert "decrypting" in restored.stderr and "verifying checksums" in restored.stderr

    after = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    assert after == before
    assert stack.exec("ftpd", *FTP_CHECKSUMS).stdout == ftp_before
    assert stack.psql(AUDIT_TRAIL)[: len(audit_before)] == audit_before


def test_restore_refuses_a_corrupt_archive(tmp_path):
    folder = tmp_path / "workbench-x"
    folder.mkdir()
    (folder / "mlflow.dump").write_bytes(b"changed")
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "created": "x",
                "mlflow": "x",
                "counts": {},
                "files": {"mlflow.dump": {"sha256": "0" * 64, "bytes": 7}},
            }
        )
    )
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname="workbench-x")
    env = {"WORKBENCH_COMPOSE": f"docker compose -p wbnothing{os.getpid()} -f {REPO / 'docker-compose.yml'}"}
    result = subprocess.run(
        ["scripts/restore.sh", str(archive)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "mlflow.dump is corrupt" in result.stderr
