"""Run an MLproject entry point in THIS Python process, logging to the same MLflow server.

`mlflow run` starts the entry point's command in a subprocess, where a debugger set on the
outer process never stops. This launcher does what `mlflow run --env-manager local` does (reads
MLproject, fills in the parameters and their defaults, creates the run with the same tags,
hands its id to the code through MLFLOW_RUN_ID) and then executes the entry point's Python
script with runpy in-process, so breakpoints work:

    python -m pdb examples/debug_launcher.py elasticnet train -P alpha=0.3
    python examples/debug_launcher.py pipeline train --experiment-name debug   # then breakpoint()

In VS Code / JupyterLab's debugger, launch this file with the same arguments. The project is a
folder name under examples/ or a path. Only entry points whose command is `python <script> ...`
can run in-process (all of this repository's).
"""

from __future__ import annotations

import argparse
import os
import runpy
import shlex
import sys
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import (
    MLFLOW_PROJECT_ENTRY_POINT,
    MLFLOW_RUN_NAME,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

EXAMPLES = Path(__file__).resolve().parent


def project_dir(name: str) -> Path:
    for candidate in (Path(name), EXAMPLES / name):
        if (candidate / "MLproject").is_file():
            return candidate.resolve()
    raise SystemExit(f"no MLproject in {name!r} nor in {EXAMPLES / name}")


def command_for(project: Path, entry_point: str, given: dict[str, str]) -> tuple[list[str], dict]:
    """The entry point's command with parameters filled in (as mlflow run does), split to argv."""
    spec = yaml.safe_load((project / "MLproject").read_text())
    entry_points = spec.get("entry_points", {})
    if entry_point not in entry_points:
        raise SystemExit(f"{project.name} has no entry point {entry_point!r}: {sorted(entry_points)}")
    entry = entry_points[entry_point]
    values = {}
    for name, declared in (entry.get("parameters") or {}).items():
        default = declared.get("default") if isinstance(declared, dict) else None
        if name in given:
            values[name] = given[name]
        elif default is not None:
            values[name] = str(default)
        else:
            raise SystemExit(f"parameter {name!r} of {entry_point!r} has no default: pass -P {name}=...")
    unknown = set(given) - set(values)
    if unknown:
        raise SystemExit(f"unknown parameters for {entry_point!r}: {sorted(unknown)}")
    argv = shlex.split(entry["command"].format(**{k: shlex.quote(v) for k, v in values.items()}))
    if len(argv) < 2 or Path(argv[0]).name not in ("python", "python3") or not argv[1].endswith(".py"):
        raise SystemExit(f"cannot run {entry['command']!r} in-process: not `python <script>.py ...`")
    return argv[1:], values


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("project", help="a folder under examples/ (elasticnet, pipeline) or a path")
    parser.add_argument("entry_point", nargs="?", default="main")
    parser.add_argument("-P", "--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--experiment-name", default=None, help="default: $MLFLOW_EXPERIMENT_NAME, else the project's name"
    )
    parser.add_argument("--run-name", default=None)
    options = parser.parse_args(args)

    project = project_dir(options.project)
    given = dict(p.split("=", 1) for p in options.param)
    script_argv, values = command_for(project, options.entry_point, given)

    experiment = options.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or project.name
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    tags = {
        MLFLOW_USER: os.environ.get("USER", "jovyan"),
        MLFLOW_SOURCE_NAME: str(project),
        MLFLOW_SOURCE_TYPE: "PROJECT",
        MLFLOW_PROJECT_ENTRY_POINT: options.entry_point,
        "workbench.launcher": "debug_launcher",
    }
    if options.run_name:
        tags[MLFLOW_RUN_NAME] = options.run_name
    client = MlflowClient()
    run = client.create_run(experiment_id, tags=tags, run_name=options.run_name)
    for name, value in values.items():
        client.log_param(run.info.run_id, name, value)
    print(
        f"=== {project.name}:{options.entry_point} in-process, run {run.info.run_id} "
        f"(experiment {experiment!r}) ===",
        flush=True,
    )

    # What `mlflow run` gives the entry point's process: the run id, the experiment, the cwd.
    os.environ.update({"MLFLOW_RUN_ID": run.info.run_id, "MLFLOW_EXPERIMENT_ID": experiment_id})
    script = project / script_argv[0]
    os.chdir(project)
    sys.path.insert(0, str(script.parent))
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    sys.argv = [str(script), *script_argv[1:]]
    status = RunStatus.FAILED
    try:
        runpy.run_path(str(script), run_name="__main__")
        status = RunStatus.FINISHED
    finally:
        if mlflow.active_run():
            mlflow.end_run(RunStatus.to_string(status))
        client.set_terminated(run.info.run_id, RunStatus.to_string(status))
        os.environ.pop("MLFLOW_RUN_ID", None)  # start_run() consumes it; drop it if it did not
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        sys.argv = saved_argv  # pdb restarts the program with sys.argv
        os.chdir(saved_cwd)
        print(f"=== run {run.info.run_id} {RunStatus.to_string(status)} ===")


if __name__ == "__main__":
    main()
