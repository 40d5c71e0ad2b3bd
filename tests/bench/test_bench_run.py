"""`make bench` (bench/run.sh) runs in a stack of its own, Compose project <project>-bench, and
removes it with its volumes when it ends, also when interrupted: the benchmark's experiments,
runs, models and files never reach the user's workbench (issue 16, section 4).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from utils.stack import REPO, Stack
from utils.wait import wait_until

NOTHING = {"containers": [], "volumes": [], "networks": []}


def leftovers(project: str) -> dict[str, list[str]]:
    """Containers, volumes and networks of the Compose project `project` (or labelled with it)."""

    def listed(*command: str) -> list[str]:
        return subprocess.run(["docker", *command], capture_output=True, text=True, check=True).stdout.split()

    compose = f"label=com.docker.compose.project={project}"
    workbench = f"label=org.workbench.project={project}"  # serve.sh's and the serving bench's
    return {
        "containers": listed("ps", "-aq", "--filter", compose) + listed("ps", "-aq", "--filter", workbench),
        "volumes": listed("volume", "ls", "-q", "--filter", compose),
        "networks": listed("network", "ls", "-q", "--filter", compose),
    }


def experiment_names(stack: Stack) -> set[str]:
    """Every experiment of a stack's tracking server, deleted ones too (its rows in Postgres)."""
    return {name for (name,) in stack.psql("SELECT name FROM experiments")}


@pytest.mark.slow
def test_interrupted_bench_leaves_nothing_in_the_users_workbench_and_removes_its_own_stack(stack, tmp_path):
    """A quick `make bench`, interrupted with Ctrl-C while bench.py logs its experiments in the
    bench's own stack: that stack goes with its volumes (runs, rows, FTP files), and the user's
    tracking server has not one experiment more than before."""
    bench_stack = Stack(f"{stack.project}-bench", stack.env_file)
    assert leftovers(bench_stack.project) == NOTHING
    before = experiment_names(stack)
    env = {
        **os.environ,
        "BENCH_SMALL": "1",
        "BENCH_REPS": "1",
        "BENCH_SKIP_SERVING": "1",
        "BENCH_SKIP_STARTUP": "1",
        "WORKBENCH_COMPOSE": f"docker compose -p {stack.project} --env-file {stack.env_file}",
    }
    log = tmp_path / "bench.log"
    with log.open("w") as output:
        # A session of its own: Ctrl-C in a terminal signals the whole foreground process group.
        bench = subprocess.Popen(
            [str(REPO / "bench" / "run.sh")],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def benchmark_experiments() -> set[str] | str:
        if bench.poll() is not None:
            return "bench/run.sh ended"
        return {name for name in experiment_names(bench_stack) if name.startswith("bench-")}

    try:
        created = wait_until(
            benchmark_experiments,
            timeout=600,
            interval=2,
            what="bench.py's first experiment in the bench's own stack",
        )
        assert isinstance(created, set), f"bench/run.sh ended early:\n{log.read_text()[-4000:]}"
        assert not created & before
        os.killpg(bench.pid, signal.SIGINT)
        assert bench.wait(timeout=180) != 0
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    assert "removing the bench's stack" in log.read_text()
    assert leftovers(bench_stack.project) == NOTHING, log.read_text()[-4000:]
    assert experiment_names(stack) == before
    assert stack.compose("ps", "-q", "--status", "running", "mlflow-server").stdout.strip(), (
        "the user's workbench keeps running"
    )
