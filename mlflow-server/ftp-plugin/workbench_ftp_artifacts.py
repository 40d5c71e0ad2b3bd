"""MLflow's FTP artifact repository, fixed for a server that proxies artifacts.

The built-in one (mlflow.store.artifact.ftp_artifact_repo) has two faults that reach clients:
- its error messages quote its artifact URI, which holds the FTP user's password
  ("The following failures occurred while downloading one or more artifacts from
  ftp://user:password@host/..."), and the tracking server sends that message to the client;
- a file that does not exist is an INTERNAL_ERROR (HTTP 500), which MLflow's client retries with
  backoff for minutes instead of being told "not found" (404) at once.
It is also slow where a run has many artifacts: it opens a new FTP connection and logs in for
every file, and lists a directory with NLST and then a CWD (and SIZE) per entry. This one
- keeps logged-in connections in a small per-process pool (MLFLOW_FTP_POOL_SIZE, default 4),
  checked with NOOP when idle for a while and dropped after any error;
- lists a directory with one MLSD (type and size of every entry in one answer), hiding the
  `.<name>.partial` files of uploads in progress (ftpd/ftpd.py);
- takes a proxied upload straight from the HTTP request into an FTP STOR (MLflow's
  StreamUploadMixin) instead of first writing it to a temporary file and then uploading that;
  an upload the client breaks off is aborted on FTP too (ABOR, and ftpd removes the incomplete
  file);
- hands a download to the tracking server as a stream of the FTP RETR (open_download_stream,
  used by mlflow-server/server-app) instead of a copy in the server's /tmp;
- moves file data in 1 MiB blocks instead of ftplib's 8 KiB;
- deletes (the built-in one raises "Not implemented yet"), so `mlflow gc` (`make gc`, gc.py)
  can remove a deleted run's files through the tracking server: a whole tree, deepest first, and
  a path that does not exist is nothing to do.
This subclass keeps everything else. MLflow loads it for ftp:// through the
`mlflow.artifact_repository` entry point (pyproject.toml), in place of the built-in one.
"""

from __future__ import annotations

import asyncio
import ftplib
import os
import posixpath
import socket
import threading
import time
import urllib.parse
from contextlib import contextmanager

from mlflow.entities.file_info import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.artifact_repo import StreamUploadMixin
from mlflow.store.artifact.ftp_artifact_repo import FTPArtifactRepository


def redact(uri: str) -> str:
    """ftp://user:secret@host/path -> ftp://user:***@host/path"""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


POOL_SIZE = int(os.environ.get("MLFLOW_FTP_POOL_SIZE", "4"))
TIMEOUT_SECONDS = 60
# A connection idle longer than this is checked with NOOP before use (ftpd drops idle ones
# after pyftpdlib's 300 s).
CHECK_AFTER_SECONDS = 15
BLOCK_SIZE = 1 << 20


class _Pool:
    """Logged-in FTP connections of this process, per (host, port, user, password)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[tuple[ftplib.FTP, float]]] = {}
        self._pid = os.getpid()

    def take(self, config: dict) -> ftplib.FTP:
        key = (config["host"], config["port"], config["username"], config["password"])
        while True:
            with self._lock:
                if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                    self._idle, self._pid = {}, os.getpid()
                idle = self._idle.get(key)
                ftp, since = idle.pop() if idle else (None, 0.0)
            if ftp is None:
                ftp = ftplib.FTP(timeout=TIMEOUT_SECONDS)
                ftp.connect(config["host"], config["port"])
                ftp.login(config["username"], config["password"])
                return ftp
            if time.monotonic() - since < CHECK_AFTER_SECONDS:
                return ftp
            try:
                ftp.voidcmd("NOOP")
                return ftp
            except (OSError, EOFError, ftplib.Error):
                _close(ftp)

    def give_back(self, config: dict, ftp: ftplib.FTP) -> None:
        key = (config["host"], config["port"], config["username"], config["password"])
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._pid == os.getpid() and len(idle) < POOL_SIZE:
                idle.append((ftp, time.monotonic()))
                return
        _close(ftp)


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except OSError:
        pass


_POOL = _Pool()


def _abort(ftp: ftplib.FTP, data: socket.socket) -> None:
    """Break off an upload in progress: ABOR on the control connection while the data connection
    is still open, so ftpd takes the bytes it got so far for an incomplete file (and removes it);
    closing the data connection alone would tell it the file is complete. The connection is not
    reused."""
    try:
        ftp.sock.settimeout(5)
        ftp.putcmd("ABOR")
        if ftp.getmultiline()[:3] == "426":  # "transfer aborted", then the answer to ABOR itself
            ftp.getmultiline()
    except (OSError, EOFError, ftplib.Error):
        pass
    finally:
        data.close()
        _close(ftp)


class WorkbenchFTPArtifactRepository(FTPArtifactRepository, StreamUploadMixin):
    def __init__(self, artifact_uri: str, *args, **kwargs):
        super().__init__(artifact_uri, *args, **kwargs)
        # The credentials are parsed into self.config above; the URI is only shown from now on.
        self.artifact_uri = redact(artifact_uri)

    @contextmanager
    def get_ftp_client(self):
        """A pooled, logged-in connection; after any error it is closed, not reused."""
        ftp = _POOL.take(self.config)
        try:
            yield ftp
        except BaseException:
            _close(ftp)
            raise
        _POOL.give_back(self.config, ftp)

    def _directory(self, artifact_path):
        return posixpath.join(self.path, artifact_path) if artifact_path else self.path

    def log_artifact(self, local_file, artifact_path=None):
        with open(local_file, "rb") as f:
            self.log_artifact_from_stream(f, os.path.basename(local_file), artifact_path)

    def log_artifact_from_stream(self, stream, artifact_file_name, artifact_path=None):
        directory = self._directory(artifact_path)
        with self.get_ftp_client() as ftp:
            self._mkdir(ftp, directory)
            ftp.storbinary("STOR " + posixpath.join(directory, posixpath.basename(artifact_file_name)),
                           stream, blocksize=BLOCK_SIZE)

    async def log_artifact_from_async_stream(self, chunks, artifact_file_name, artifact_path=None):
        """The tracking server's upload route hands the request body here as it arrives: each
        chunk goes to ftpd's data connection without a thread hop or a temporary file."""
        remote = posixpath.join(self._directory(artifact_path), posixpath.basename(artifact_file_name))

        def start() -> tuple[ftplib.FTP, socket.socket]:
            ftp = _POOL.take(self.config)
            try:
                self._mkdir(ftp, posixpath.dirname(remote))
                ftp.voidcmd("TYPE I")
                return ftp, ftp.transfercmd("STOR " + remote)
            except BaseException:
                _close(ftp)
                raise

        ftp, data = await asyncio.to_thread(start)
        try:
            data.setblocking(False)
            loop = asyncio.get_running_loop()
            async for chunk in chunks:
                await loop.sock_sendall(data, chunk)
        except BaseException:  # the client went away, or ftpd did: no file is published
            _abort(ftp, data)
            raise
        await self._end_transfer(ftp, data)

    async def open_download_stream(self, artifact_path):
        """(size, chunks) of one file, straight from an FTP RETR, for the tracking server's
        download route (mlflow-server/server-app), or None when it is not a plain file (MLflow's
        own route answers then). Nothing is staged on the server's disk."""
        remote = self._directory(artifact_path)

        def start():
            ftp = _POOL.take(self.config)
            try:
                ftp.voidcmd("TYPE I")
                try:
                    size = ftp.size(remote)
                except ftplib.error_perm:  # missing, or a directory
                    _POOL.give_back(self.config, ftp)
                    return None
                return ftp, ftp.transfercmd("RETR " + remote), size
            except BaseException:
                _close(ftp)
                raise

        started = await asyncio.to_thread(start)
        if started is None:
            return None
        ftp, data, size = started
        return size, self._download_chunks(ftp, data, size)

    async def _download_chunks(self, ftp, data, size):
        loop = asyncio.get_running_loop()
        data.setblocking(False)
        received = 0
        try:
            while chunk := await loop.sock_recv(data, BLOCK_SIZE):
                received += len(chunk)
                yield chunk
            if received != size:
                raise OSError(f"FTP RETR ended after {received} of {size} bytes")
        except BaseException:  # the client went away, or ftpd did: this connection is done
            data.close()
            _close(ftp)
            raise
        await self._end_transfer(ftp, data)

    async def _end_transfer(self, ftp, data) -> None:
        """A transfer's data connection closed, ftpd's answer (226) read: the connection goes
        back to the pool; without that answer, it is closed."""
        data.close()
        try:
            await asyncio.to_thread(ftp.voidresp)
        except BaseException:
            _close(ftp)
            raise
        _POOL.give_back(self.config, ftp)

    def list_artifacts(self, path=None):
        with self.get_ftp_client() as ftp:
            try:
                entries = list(ftp.mlsd(self._directory(path), facts=["type", "size"]))
            except ftplib.error_perm:  # not a directory, or nothing there
                return []
        infos = []
        for name, facts in sorted(entries):
            kind = facts.get("type", "").lower()
            if kind in ("cdir", "pdir") or name in (".", "..", "") or (
                    name.startswith(".") and name.endswith(".partial")):
                continue
            file_path = posixpath.join(path, name) if path else name
            if kind == "dir":
                infos.append(FileInfo(file_path, True, None))
            else:
                infos.append(FileInfo(file_path, False, int(facts["size"]) if "size" in facts else None))
        return infos

    def delete_artifacts(self, artifact_path=None):
        """Remove a file, or a directory and everything in it, on one pooled connection."""
        if artifact_path and (posixpath.isabs(artifact_path)
                              or ".." in posixpath.normpath(artifact_path).split("/")):
            # posixpath.join would drop the root for an absolute path: never outside the root.
            raise MlflowException(f"Invalid artifact path '{artifact_path}'",
                                  error_code=INVALID_PARAMETER_VALUE)
        target = self._directory(artifact_path)
        try:
            with self.get_ftp_client() as ftp:
                kind = self._kind(ftp, target)
                if kind == "dir":
                    self._remove_tree(ftp, target)
                elif kind == "file":
                    ftp.delete(target)
        except ftplib.Error as exc:  # ftpd's answer names the path, never the credentials
            raise MlflowException(
                f"Could not delete the artifacts at '{artifact_path or ''}': {exc}") from None

    @staticmethod
    def _kind(ftp: ftplib.FTP, path: str) -> str | None:
        """'dir', 'file' or None (nothing there), from one MLSD of the parent directory."""
        path = path.rstrip("/")
        if not path:
            return "dir"
        parent, name = posixpath.split(path)
        try:
            entries = list(ftp.mlsd(parent or "/", facts=["type"]))
        except ftplib.error_perm:  # the parent is missing, or not a directory
            return None
        for entry, facts in entries:
            if entry == name:
                return "dir" if facts.get("type", "").lower() == "dir" else "file"
        return None

    @staticmethod
    def _remove_tree(ftp: ftplib.FTP, top: str) -> None:
        """DELE every file, RMD every directory once it is empty (deepest first), then top."""
        pending = [(top, False)]
        while pending:
            directory, emptied = pending.pop()
            if emptied:
                ftp.rmd(directory)
                continue
            pending.append((directory, True))
            for name, facts in list(ftp.mlsd(directory, facts=["type"])):
                kind = facts.get("type", "").lower()
                if kind in ("cdir", "pdir") or name in (".", "..", ""):
                    continue
                if kind == "dir":
                    pending.append((posixpath.join(directory, name), False))
                else:  # files, and the .partial file of an upload in progress
                    ftp.delete(posixpath.join(directory, name))

    def _download_file(self, remote_file_path, local_path):
        try:
            with self.get_ftp_client() as ftp, open(local_path, "wb") as f:
                ftp.retrbinary("RETR " + self._directory(remote_file_path), f.write, blocksize=BLOCK_SIZE)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                raise MlflowException(f"Artifact '{remote_file_path}' does not exist",
                                      error_code=RESOURCE_DOES_NOT_EXIST) from None
            raise
