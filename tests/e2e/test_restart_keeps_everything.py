"""`docker compose down` (volumes kept) then up again: every run, metric, model version and
artifact is still there, artifacts byte for byte, and every row of the audit trail."""

from __future__ import annotations

import hashlib
import json

import pytest

from utils.stack import http_session
from utils.workloads import AUDIT_TRAIL, CREATE, FTP_CHECKSUMS, SNAPSHOT


@pytest.mark.slow
def test_down_and_up_keeps_runs_metrics_versions_and_artifacts(stack, admin_auth):
    stack.python("jupyter", CREATE)
    before = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    assert len(before["runs"]) == 2 and len(before["versions"]) == 2
    ftp_before = stack.exec("ftpd", *FTP_CHECKSUMS).stdout
    audit_before = stack.psql(AUDIT_TRAIL)
    assert any(row[4].endswith("/runs/create") for row in audit_before), audit_before[-5:]

    stack.down()  # volumes kept
    stack.up()

    after = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    assert after == before
    ftp_after = stack.exec("ftpd", *FTP_CHECKSUMS).stdout
    assert ftp_after == ftp_before
    assert stack.psql(AUDIT_TRAIL)[: len(audit_before)] == audit_before
    # And through the REST API from the host, with the same credentials as before.
    mlflow_url = stack.url("mlflow-server", 5000)
    run_id = next(iter(before["runs"]))
    blob = http_session(admin_auth).get(
        f"{mlflow_url}/get-artifact", timeout=30, params={"run_uuid": run_id, "path": "data/big.bin"}
    )
    assert hashlib.sha256(blob.content).hexdigest() == before["runs"][run_id]["files"]["data/big.bin"]
