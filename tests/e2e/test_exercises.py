"""The exercise course: solutions pass the checks, untouched exercises fail them, with reasons.

Each notebook runs inside the jupyter container with papermill (copied in, so this works on a
stack started before exercises/ was mounted), its names injected as papermill parameters so the
test has its own experiment and registered model. Then the checks run through `make
exercise-check` itself: pytest in the stack's jupyter container (never on the host: exercises/ is
writable from JupyterLab), against the tracking server through the REST API only.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid

from utils.serving import free_port, served_model
from utils.stack import REPO

EXERCISES = REPO / "exercises"


def run_exercise(stack, notebook, experiment: str, model: str, **parameters: str) -> None:
    target = f"/tmp/{notebook.parent.name}-{notebook.name}"
    stack.compose("cp", str(notebook), f"jupyter:{target}")
    options = [arg for key, value in parameters.items() for arg in ("-p", key, value)]
    result = stack.exec(
        "jupyter",
        "papermill",
        "--no-progress-bar",
        target,
        f"{target}.out.ipynb",
        "-p",
        "EXPERIMENT_NAME",
        experiment,
        "-p",
        "MODEL_NAME",
        model,
        *options,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{notebook.relative_to(REPO)} failed:\n{result.stderr[-6000:]}"


def run_checks(
    stack, experiment: str, model: str, serving_url: str | None = None
) -> subprocess.CompletedProcess:
    """`make exercise-check` for the stack's project; serving_url as the jupyter container sees it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXERCISE_", "WORKBENCH_SERVING_URL"))}
    if serving_url:
        env["WORKBENCH_SERVING_URL"] = serving_url
    env.update(
        PROJECT=stack.project,
        COMPOSE=f"docker compose --env-file {stack.env_file}",
        EXERCISE_EXPERIMENT=experiment,
        EXERCISE_MODEL=model,
    )
    return subprocess.run(
        ["make", "--no-print-directory", "exercise-check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def failed(result: subprocess.CompletedProcess) -> bool:
    """make ended with an error because checks failed (not because the checks could not run)."""
    return result.returncode == 2 and re.search(r"^\d+ failed\b", result.stdout, re.M) is not None


def test_course_is_complete():
    names = {p.relative_to(EXERCISES).as_posix() for p in EXERCISES.rglob("*.ipynb")}
    for notebook in ("01-tracking.ipynb", "02-registry.ipynb", "03-serving.ipynb"):
        assert {notebook, f"solutions/{notebook}"} <= names, f"{notebook} or its solution is missing"
    for notebook in EXERCISES.glob("0*.ipynb"):
        assert "pass  # YOUR CODE HERE" in notebook.read_text(), f"{notebook.name} has no TODO cell"
        assert "pass  # YOUR CODE HERE" not in (EXERCISES / "solutions" / notebook.name).read_text()


def test_solutions_pass_the_checks(stack, unique_name):
    """All three, exercise 3 with the model served as its notebook says (make serve)."""
    experiment, model = f"{unique_name}-exp", f"{unique_name}-model"
    for notebook in ("01-tracking.ipynb", "02-registry.ipynb"):
        run_exercise(stack, EXERCISES / "solutions" / notebook, experiment, model)
    with served_model(stack, f"models:/{model}@staging", model) as (_, url_from_jupyter):
        run_exercise(
            stack,
            EXERCISES / "solutions" / "03-serving.ipynb",
            experiment,
            model,
            SERVING_URL=url_from_jupyter,
        )
        result = run_checks(stack, experiment, model, serving_url=url_from_jupyter)
    assert result.returncode == 0, f"the checks fail on the solutions:\n{result.stdout[-6000:]}"
    assert "12 passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-3000:]


def test_without_a_model_server_the_serving_check_says_how_to_start_one(stack, unique_name):
    result = run_checks(
        stack, f"{unique_name}-exp", f"{unique_name}-model", serving_url=f"http://127.0.0.1:{free_port()}"
    )
    assert failed(result), result.stdout[-3000:]
    assert "nothing answers at" in result.stdout
    assert "make serve MODEL=models:/IrisModel@staging PORT=5002" in result.stdout, result.stdout[-3000:]


def test_untouched_exercises_fail_the_checks_saying_what_is_missing(stack, unique_name):
    experiment, model = f"{unique_name}-exp", f"{unique_name}-model"
    # Nothing done yet: the checks name the experiment and the model that do not exist.
    result = run_checks(stack, experiment, model)
    assert failed(result), result.stdout[-3000:]
    assert f"there is no experiment named '{experiment}'" in result.stdout
    assert f"there is no registered model named '{model}'" in result.stdout
    # The untouched notebooks run (their TODO cells are `pass`) but log none of what is asked.
    for notebook in ("01-tracking.ipynb", "02-registry.ipynb"):
        run_exercise(stack, EXERCISES / notebook, experiment, model)
    result = run_checks(stack, experiment, model)
    assert failed(result), result.stdout[-3000:]
    for message in (
        f"there is no experiment named '{experiment}'",  # exercise 1's Task 1 undone
        f"there is no registered model named '{model}'",
    ):
        assert message in result.stdout, f"{message!r} not in:\n{result.stdout[-4000:]}"


def test_checks_of_a_half_done_exercise_name_each_missing_piece(stack, unique_name):
    """An experiment and a bare run, nothing else: every check says what is missing."""
    experiment = f"{unique_name}-exp"
    stack.python(
        "jupyter",
        f"""
import mlflow
mlflow.set_experiment({experiment!r})
with mlflow.start_run():
    mlflow.log_param("n_estimators", 10)
""",
    )
    result = run_checks(stack, experiment, f"{unique_name}-model")
    assert failed(result), result.stdout[-3000:]
    for message in (
        "no tag notebook-type=exercise",
        "no artifact under input_data/",
        "no artifact under output_data/",
        "no parameter num_trees",
        "no metric accuracy",
        "no model named 'model'",
    ):
        assert message in result.stdout, f"{message!r} not in:\n{result.stdout[-4000:]}"


def test_code_planted_in_exercises_from_jupyterlab_never_runs_on_the_host(stack, tmp_path, unique_name):
    """A notebook plants code where pytest picks it up (a conftest.py in exercises/ and a test module
    next to the checks), then the user runs `make exercise-check` on the host: it runs in the
    jupyter container, where the notebook's code runs anyway, and never on the host."""
    host_marker = tmp_path / "planted-code-ran-here"
    planted = (
        f"import os, pathlib\npath = pathlib.Path({str(host_marker)!r})\n"
        "path.parent.mkdir(parents=True, exist_ok=True)\npath.write_text(os.uname().nodename)\n"
    )
    plants = [EXERCISES / "conftest.py", EXERCISES / "checks" / f"test_planted_{uuid.uuid4().hex[:8]}.py"]
    assert not any(path.exists() for path in plants)
    # Written through the jupyter container, as a notebook writes there: by the uid that owns
    # exercises/ on this host (JupyterLab's jovyan, uid 1000, on a typical machine; root on CI).
    owner = str(EXERCISES.stat().st_uid)
    try:
        for path in plants:
            stack.exec(
                "jupyter", "tee", f"exercises/{path.relative_to(EXERCISES)}", input=planted, user=owner
            )
        assert all(path.exists() for path in plants)
        result = run_checks(stack, f"{unique_name}-exp", f"{unique_name}-model")
        assert f"there is no experiment named '{unique_name}-exp'" in result.stdout, result.stdout[-3000:]
        assert not host_marker.exists(), f"planted code ran on the host: {host_marker}"
        # It ran, in the jupyter container.
        ran_in = stack.exec("jupyter", "cat", str(host_marker)).stdout
        assert ran_in == stack.inspect("jupyter")["Config"]["Hostname"]
    finally:
        for path in plants:
            path.unlink(missing_ok=True)
        stack.exec("jupyter", "rm", "-rf", str(host_marker.parent), check=False)
