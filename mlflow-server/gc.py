"""`make gc` (`entrypoint.sh gc`, run as a one-shot of the mlflow-migrate service): MLflow's own
`mlflow gc`, with the workbench's stores, then the empty folders it leaves on FTP.

Deleting a run or an experiment in MLflow only marks it deleted: its rows and its files stay
until `mlflow gc` removes them for good. The rows go straight from Postgres (the backend store
URI that entrypoint.sh builds, handed to gc in this process, never on a command line). The files
go through the tracking server: runs' artifact URIs are mlflow-artifacts:/..., which gc deletes
with DELETE /api/2.0/mlflow-artifacts/artifacts/..., which the server hands to the FTP plugin
(ftp-plugin/, delete_artifacts). So mlflow-server must be running, and gc logs in as the admin.

Options, from the environment (`make gc OLDER_THAN=30d RUN_IDS=a,b`): OLDER_THAN, RUN_IDS,
EXPERIMENT_IDS, LOGGED_MODEL_IDS, passed on to gc's --older-than, --run-ids, --experiment-ids,
--logged-model-ids. A bad value gets gc's own message and a non-zero exit. MLFLOW_GC_TRACKING_URI:
the tracking server, when it is not http://mlflow-server:5000.

gc deletes a run's `<experiment>/<run>/artifacts` but not the `<experiment>/<run>` folder around
it, nor a hard-deleted experiment's own folder (its logged models' and traces' files are in it
too). This job removes those afterwards, for what gc did remove, and only where the location is
the one the server gave by default, so the folder belongs to that run or experiment alone.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

OPTIONS = {
    "OLDER_THAN": "--older-than",
    "RUN_IDS": "--run-ids",
    "EXPERIMENT_IDS": "--experiment-ids",
    "LOGGED_MODEL_IDS": "--logged-model-ids",
}
SERVER = os.environ.get("MLFLOW_GC_TRACKING_URI", "http://mlflow-server:5000")


def log(message: str) -> None:
    print(f"gc: {message}", flush=True)


def server_is_up() -> bool:
    try:
        with urllib.request.urlopen(f"{SERVER}/health", timeout=10):
            return True
    except urllib.error.HTTPError:  # it answered
        return True
    except OSError:  # no such host (not running), refused, timed out
        return False


def gc_args() -> list[str]:
    args = ["--backend-store-uri", os.environ["MLFLOW_BACKEND_STORE_URI"]]
    for name, option in OPTIONS.items():
        if value := os.environ.get(name, "").strip():
            args += [option, value]
    return args


def deleted_folders() -> tuple[dict[str, str], dict[str, str]]:
    """The default artifact folders of the runs and experiments now marked deleted, by id."""
    import mlflow
    from mlflow.entities import LifecycleStage, ViewType

    experiments = mlflow.search_experiments(view_type=ViewType.ALL)
    experiment_folders = {
        e.experiment_id: e.artifact_location
        for e in experiments
        if e.lifecycle_stage == LifecycleStage.DELETED
        and e.artifact_location == f"mlflow-artifacts:/{e.experiment_id}"
    }
    runs = (
        mlflow.search_runs(
            [e.experiment_id for e in experiments], output_format="list", run_view_type=ViewType.DELETED_ONLY
        )
        if experiments
        else []
    )
    run_folders = {
        r.info.run_id: r.info.artifact_uri.removesuffix("/artifacts")
        for r in runs
        if r.info.artifact_uri == f"mlflow-artifacts:/{r.info.experiment_id}/{r.info.run_id}/artifacts"
    }
    return run_folders, experiment_folders


def remove_folders_of_gone(run_folders: dict[str, str], experiment_folders: dict[str, str]) -> int:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient()

    def gone(get, id_: str) -> bool:
        try:
            get(id_)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return True
            raise
        return False

    removed = 0
    for folders, get in ((run_folders, client.get_run), (experiment_folders, client.get_experiment)):
        for id_, folder in folders.items():
            if gone(get, id_):
                get_artifact_repository(folder).delete_artifacts()
                removed += 1
    return removed


def main() -> int:
    # gc needs no FTP credentials (the server deletes the files): keep them out of its reach.
    os.environ.pop("MLFLOW_ARTIFACTS_DESTINATION", None)
    os.environ["MLFLOW_TRACKING_URI"] = SERVER
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = os.environ.pop("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not server_is_up():
        log(
            f"mlflow-server is not running (no answer at {SERVER}): gc deletes artifacts through "
            "it. Start it (make up), then run make gc again. Nothing was deleted."
        )
        return 1

    import click
    from mlflow.cli import gc
    from mlflow.exceptions import MlflowException

    try:
        folders = deleted_folders()
        gc.main(args=gc_args(), prog_name="mlflow gc", standalone_mode=False)
        removed = remove_folders_of_gone(*folders)
    except click.ClickException as exc:  # a malformed option: click's usage message
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 1
    except MlflowException as exc:  # a bad value, or a run that may not be deleted: MLflow says why
        log(f"error: {exc.message}")
        return 1
    log(f"done; removed {removed} emptied run or experiment folder(s) from the artifact store")
    return 0


if __name__ == "__main__":
    sys.exit(main())
