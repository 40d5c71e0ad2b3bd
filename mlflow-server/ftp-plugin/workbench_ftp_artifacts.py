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
- bounds what clients can hold of ftpd (issue 14, finding 13: slow readers holding streamed
  downloads used up ftpd's connections): per server worker, at most MLFLOW_FTP_MAX_CONNECTIONS
  FTP connections (a call waits up to 30 s for one, then gets a 503), of which at most
  MLFLOW_FTP_MAX_DOWNLOADS carry downloads of files over 1 MiB (one more is refused at once with
  a 503, TEMPORARILY_UNAVAILABLE, which MLflow's client retries), so uploads, listings and
  deletes always find a connection; a file of at most 1 MiB is read whole and the connection
  given back before the client reads a byte; and a streamed download whose client takes no data
  for MLFLOW_FTP_STALL_TIMEOUT_SECONDS is cut: its FTP connections closed, its slot freed, its
  HTTP request cancelled (the client's connection is closed);
- deletes (the built-in one raises "Not implemented yet"), so `mlflow gc` (`make gc`, gc.py)
  can remove a deleted run's files through the tracking server: a whole tree, deepest first, and
  a path that does not exist is nothing to do.
This subclass keeps everything else. MLflow loads it for ftp:// through the
`mlflow.artifact_repository` entry point (pyproject.toml), in place of the built-in one.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import os
import posixpath
import socket
import threading
import time
import urllib.parse
from contextlib import contextmanager

from mlflow.entities.file_info import FileInfo
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)
from mlflow.store.artifact.artifact_repo import StreamUploadMixin
from mlflow.store.artifact.ftp_artifact_repo import FTPArtifactRepository


def redact(uri: str) -> str:
    """ftp://user:secret@host/path -> ftp://user:***@host/path"""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


_logger = logging.getLogger(__name__)

POOL_SIZE = int(os.environ.get("MLFLOW_FTP_POOL_SIZE", "4"))
# Bounds per server worker (process); ftpd's own limit (FTPD_MAX_CONNECTIONS) is sized above
# workers x MAX_CONNECTIONS (docker-compose.yml says the budget).
MAX_CONNECTIONS = max(2, int(os.environ.get("MLFLOW_FTP_MAX_CONNECTIONS", "16")))
# Fewer than MAX_CONNECTIONS: downloads never take the connections uploads and listings need.
MAX_DOWNLOADS = min(max(1, int(os.environ.get("MLFLOW_FTP_MAX_DOWNLOADS", "8"))), MAX_CONNECTIONS - 1)
STALL_TIMEOUT_SECONDS = float(os.environ.get("MLFLOW_FTP_STALL_TIMEOUT_SECONDS", "30"))
CONNECTION_WAIT_SECONDS = 30
TIMEOUT_SECONDS = 60
# A connection idle longer than this is checked with NOOP before use (ftpd drops idle ones
# after pyftpdlib's 300 s).
CHECK_AFTER_SECONDS = 15
BLOCK_SIZE = 1 << 20
# A download of at most this many bytes is read whole from FTP, its connection given back at
# once: the client's pace holds nothing of ftpd's, so it needs no download slot.
BUFFERED_DOWNLOAD_BYTES = BLOCK_SIZE


class ArtifactStoreBusy(MlflowException):
    """Every FTP connection or download slot of this server worker is in use: HTTP 503
    (TEMPORARILY_UNAVAILABLE), which MLflow's client retries with backoff."""

    def __init__(self, message: str):
        super().__init__(
            f"The artifact store is busy: {message}. Retry in a few seconds.",
            error_code=TEMPORARILY_UNAVAILABLE,
        )


class _Pool:
    """Logged-in FTP connections of this process, per (host, port, user, password): at most
    MAX_CONNECTIONS open (in use or idle), at most POOL_SIZE of them idle."""

    def __init__(self):
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._idle: dict[tuple, list[tuple[ftplib.FTP, float]]] = {}
        self._open = 0
        self._pid = os.getpid()

    def _forked(self) -> bool:
        if self._pid == os.getpid():
            return False
        self._idle, self._open, self._pid = {}, 0, os.getpid()  # the parent's sockets are not ours
        return True

    def take(self, config: dict) -> ftplib.FTP:
        key = (config["host"], config["port"], config["username"], config["password"])
        deadline = time.monotonic() + CONNECTION_WAIT_SECONDS
        while True:
            with self._lock:
                self._forked()
                while not self._idle.get(key) and self._open >= MAX_CONNECTIONS:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ArtifactStoreBusy(
                            f"all {MAX_CONNECTIONS} FTP connections of this server worker are in use"
                            " (MLFLOW_FTP_MAX_CONNECTIONS)"
                        )
                    self._freed.wait(remaining)
                idle = self._idle.get(key)
                ftp, since = idle.pop() if idle else (None, 0.0)
                if ftp is None:
                    self._open += 1
            if ftp is None:
                ftp = ftplib.FTP(timeout=TIMEOUT_SECONDS)
                ftp.workbench_pid = os.getpid()  # counted in this process's _open until closed
                try:
                    ftp.connect(config["host"], config["port"])
                    ftp.login(config["username"], config["password"])
                except BaseException:
                    _close(ftp)
                    raise
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
            if not self._forked() and len(idle) < POOL_SIZE:
                idle.append((ftp, time.monotonic()))
                self._freed.notify()
                return
        _close(ftp)

    def closed(self, ftp: ftplib.FTP | None) -> None:
        """A connection of this process is gone (each is counted once, whoever closes it)."""
        with self._lock:
            if ftp is not None:
                if getattr(ftp, "workbench_pid", None) != os.getpid():
                    return
                ftp.workbench_pid = None
            if not self._forked():
                self._open -= 1
                self._freed.notify()


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.close()
    except OSError:
        pass
    _POOL.closed(ftp)


class _Slots:
    """Download slots of this process: a download of a file over BUFFERED_DOWNLOAD_BYTES holds
    one while its FTP RETR is open; none left is a 503 at once, never a wait."""

    def __init__(self, size: int):
        self._lock = threading.Lock()
        self._size, self._used, self._pid = size, 0, os.getpid()

    def take(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._used, self._pid = 0, os.getpid()
            if self._used >= self._size:
                raise ArtifactStoreBusy(
                    f"this server worker already sends {self._size} downloads of large artifacts"
                    " (MLFLOW_FTP_MAX_DOWNLOADS)"
                )
            self._used += 1

    def give_back(self) -> None:
        with self._lock:
            if self._pid == os.getpid() and self._used:
                self._used -= 1


_DOWNLOADS = _Slots(MAX_DOWNLOADS)


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
            ftp.storbinary(
                "STOR " + posixpath.join(directory, posixpath.basename(artifact_file_name)),
                stream,
                blocksize=BLOCK_SIZE,
            )

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
        own route answers then). Nothing is staged on the server's disk. A file of at most
        BUFFERED_DOWNLOAD_BYTES is read whole first; a bigger one takes a download slot (none
        left: ArtifactStoreBusy) and is cut when its client stalls (_StreamedDownload)."""
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
                if size <= BUFFERED_DOWNLOAD_BYTES:
                    body = bytearray()
                    ftp.retrbinary("RETR " + remote, body.extend, blocksize=BLOCK_SIZE)
                    _POOL.give_back(self.config, ftp)
                    return size, bytes(body)
                _DOWNLOADS.take()
                try:
                    return size, (ftp, ftp.transfercmd("RETR " + remote))
                except BaseException:
                    _DOWNLOADS.give_back()
                    raise
            except ArtifactStoreBusy:
                _POOL.give_back(self.config, ftp)
                raise
            except BaseException:
                _close(ftp)
                raise

        started = await asyncio.to_thread(start)
        if started is None:
            return None
        size, source = started
        if isinstance(source, bytes):
            return size, _whole(source)
        ftp, data = source
        return size, _StreamedDownload(self, ftp, data, size).chunks()

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
            if (
                kind in ("cdir", "pdir")
                or name in (".", "..", "")
                or (name.startswith(".") and name.endswith(".partial"))
            ):
                continue
            file_path = posixpath.join(path, name) if path else name
            if kind == "dir":
                infos.append(FileInfo(file_path, True, None))
            else:
                infos.append(FileInfo(file_path, False, int(facts["size"]) if "size" in facts else None))
        return infos

    def delete_artifacts(self, artifact_path=None):
        """Remove a file, or a directory and everything in it, on one pooled connection."""
        if artifact_path and (
            posixpath.isabs(artifact_path) or ".." in posixpath.normpath(artifact_path).split("/")
        ):
            # posixpath.join would drop the root for an absolute path: never outside the root.
            raise MlflowException(
                f"Invalid artifact path '{artifact_path}'", error_code=INVALID_PARAMETER_VALUE
            )
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
                f"Could not delete the artifacts at '{artifact_path or ''}': {exc}"
            ) from None

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
        """MLflow's own download route (a copy in the server's /tmp): a file over
        BUFFERED_DOWNLOAD_BYTES takes a download slot while it is copied, so a download the
        streamed route refused as busy is refused here too, not staged on disk instead."""
        remote = self._directory(remote_file_path)
        slot = False
        try:
            with self.get_ftp_client() as ftp, open(local_path, "wb") as f:
                ftp.voidcmd("TYPE I")
                if ftp.size(remote) > BUFFERED_DOWNLOAD_BYTES:
                    _DOWNLOADS.take()
                    slot = True
                ftp.retrbinary("RETR " + remote, f.write, blocksize=BLOCK_SIZE)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                raise MlflowException(
                    f"Artifact '{remote_file_path}' does not exist", error_code=RESOURCE_DOES_NOT_EXIST
                ) from None
            raise
        finally:
            if slot:
                _DOWNLOADS.give_back()


async def _whole(body: bytes):
    yield body


class _StreamedDownload:
    """One streamed download: a download slot, a pooled connection and its RETR data connection.
    A watchdog cuts it when its client has taken no data for STALL_TIMEOUT_SECONDS (the chunk
    handed on is not taken: the stream waits at its `yield`): it closes both FTP connections,
    frees the slot and cancels the HTTP request's task (uvicorn then closes the client's
    connection). ftpd's own stall timeout (pyftpdlib's 300 s) would free only ftpd's side."""

    def __init__(self, repo: WorkbenchFTPArtifactRepository, ftp: ftplib.FTP, data: socket.socket, size: int):
        self.repo, self.ftp, self.data, self.size = repo, ftp, data, size
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()  # the request's, which opened the stream
        self.waiting_since: float | None = time.monotonic()  # None while reading from FTP
        self.done = False
        self.timer = self.loop.call_later(STALL_TIMEOUT_SECONDS, self._watch)

    def _watch(self) -> None:
        if self.done:
            return
        stalled = 0.0 if self.waiting_since is None else time.monotonic() - self.waiting_since
        if stalled < STALL_TIMEOUT_SECONDS:
            self.timer = self.loop.call_later(STALL_TIMEOUT_SECONDS - stalled, self._watch)
            return
        _logger.warning(
            "workbench: cut a download whose client took no data for %.0f s"
            " (MLFLOW_FTP_STALL_TIMEOUT_SECONDS)",
            stalled,
        )
        self._end(close=True)
        if self.task is not None:
            self.task.cancel()

    def _end(self, close: bool) -> None:
        if self.done:
            return
        self.done = True
        self.timer.cancel()
        _DOWNLOADS.give_back()
        if close:
            self.data.close()
            _close(self.ftp)

    async def chunks(self):
        received = 0
        try:
            self.data.setblocking(False)
            while True:
                self.waiting_since = None
                chunk = await self.loop.sock_recv(self.data, BLOCK_SIZE)
                if not chunk:
                    break
                received += len(chunk)
                self.waiting_since = time.monotonic()
                yield chunk
            if received != self.size:
                raise OSError(f"FTP RETR ended after {received} of {self.size} bytes")
        except BaseException:  # the client went away, or ftpd did, or the watchdog cut it
            self._end(close=True)
            raise
        self._end(close=False)
        await self.repo._end_transfer(self.ftp, self.data)
