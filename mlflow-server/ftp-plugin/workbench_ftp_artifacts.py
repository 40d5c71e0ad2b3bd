"""MLflow's FTP artifact repository, fixed for a server that proxies artifacts.

The built-in one (mlflow.store.artifact.ftp_artifact_repo) has two faults that reach clients:
- its error messages quote its artifact URI, which holds the FTP user's password
  ("The following failures occurred while downloading one or more artifacts from
  ftp://user:password@host/..."), and the tracking server sends that message to the client;
- a file that does not exist is an INTERNAL_ERROR (HTTP 500), which MLflow's client retries with
  backoff for minutes instead of being told "not found" (404) at once.
This subclass keeps everything else and fixes both. MLflow loads it for ftp:// through the
`mlflow.artifact_repository` entry point (pyproject.toml), in place of the built-in one.
"""

from __future__ import annotations

import ftplib
import urllib.parse

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.ftp_artifact_repo import FTPArtifactRepository


def redact(uri: str) -> str:
    """ftp://user:secret@host/path -> ftp://user:***@host/path"""
    parsed = urllib.parse.urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


class WorkbenchFTPArtifactRepository(FTPArtifactRepository):
    def __init__(self, artifact_uri: str, *args, **kwargs):
        super().__init__(artifact_uri, *args, **kwargs)
        # The credentials are parsed into self.config above; the URI is only shown from now on.
        self.artifact_uri = redact(artifact_uri)

    def _download_file(self, remote_file_path, local_path):
        try:
            return super()._download_file(remote_file_path, local_path)
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                raise MlflowException(f"Artifact '{remote_file_path}' does not exist",
                                      error_code=RESOURCE_DOES_NOT_EXIST) from None
            raise
