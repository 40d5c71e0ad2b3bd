"""ftpd: one user, its password from a file; anonymous and wrong passwords refused; transfers
logged; reachable only inside the stack."""

from __future__ import annotations

FTP_LOGIN = """
import ftplib, sys
user, password = sys.stdin.read().split("\\n", 1)
try:
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", 21, timeout=10)
        ftp.login(user, password)
        print("ok")
except ftplib.error_perm as exc:
    print("refused", exc)
"""


def ftp_login(stack, user: str, password: str) -> str:
    return stack.exec("ftpd", "python3", "-c", FTP_LOGIN, input=f"{user}\n{password}").stdout.strip()


def test_the_user_logs_in_with_its_password(stack):
    assert ftp_login(stack, "mlflow", stack.read_secret("ftpd", "ftpd-password")) == "ok"


def test_a_wrong_password_is_refused(stack):
    assert ftp_login(stack, "mlflow", "wrong-password").startswith("refused 530")


def test_anonymous_login_is_refused(stack):
    assert ftp_login(stack, "anonymous", "guest@example.com").startswith("refused 530")


def test_transfers_are_logged(stack):
    code = """
import ftplib, io, sys
password = sys.stdin.read()
with ftplib.FTP() as ftp:
    ftp.connect("127.0.0.1", 21, timeout=10)
    ftp.login("mlflow", password)
    ftp.storbinary("STOR transfer-log-probe.txt", io.BytesIO(b"x" * 1234))
    ftp.retrbinary("RETR transfer-log-probe.txt", lambda _: None)
    ftp.delete("transfer-log-probe.txt")
"""
    stack.exec("ftpd", "python3", "-c", code, input=stack.read_secret("ftpd", "ftpd-password"))
    logs = stack.logs("ftpd")
    assert "[mlflow] STOR /srv/ftp/transfer-log-probe.txt completed=1 bytes=1234" in logs
    assert "[mlflow] RETR /srv/ftp/transfer-log-probe.txt completed=1 bytes=1234" in logs


def test_not_published_on_the_host(stack):
    ports = stack.inspect("ftpd")["NetworkSettings"]["Ports"]
    assert all(not bindings for bindings in ports.values()), ports


def test_runs_as_non_root(stack):
    assert stack.exec("ftpd", "id", "-u").stdout.strip() == "1001"
