"""The suite's fixtures: one real workbench stack per session, under its own Compose project.

The stack is built and started with `docker compose up --wait` (the healthchecks are the
readiness signal) under a unique project name, with every port on an ephemeral 127.0.0.1 port,
so it runs beside a user's own workbench. At the end it dumps the logs of every service if any
test failed, then removes the stack and its volumes.

`make test` runs pytest in two processes (pytest-xdist, whole files to each): each process has
a stack of its own, so a test that restarts or breaks its stack never touches the other's tests.
The images are built once, by whichever process gets there first (a lock between them).

Inner loop: WORKBENCH_TEST_PROJECT=wbdev WORKBENCH_TEST_KEEP=1 reuses (and keeps) one stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path

import pytest

from utils.servers import running, unverified_server
from utils.stack import Stack, image_present, portainer_image

# Hostile values, as the official postgres image's tests use: spaces, quotes, URI and
# configparser metacharacters. They must survive every connection URI and config file.
HOSTILE_SECRETS = {
    "POSTGRES_PASSWORD": 'su per\'user "pw" $HOME;%',
    "MLFLOW_DB_PASSWORD": "db p@ss:w/o'rd\"%20?#&=+ ",
    "FTPD_PASSWORD": "ftp p@ss:w/o'rd\"%41#x",
    "MLFLOW_ADMIN_PASSWORD": "Adm1n p@ss:wo'rd\"%%x",
    "MLFLOW_FLASK_SECRET_KEY": "flask secret 'key' \"%\" for tests only",
    "JUPYTER_TOKEN": "test-token-Zq9vX2kP7rL4",
    "PORTAINER_ADMIN_PASSWORD": "portainer-p@ss w0rd'\"",
}
# The DB password's trailing space is on purpose: only machines type it.


def pytest_configure(config):
    for marker in (
        "slow: brings up a second stack or restarts services (minutes)",
        "portainer: needs the Portainer image (skipped where it cannot be had)",
    ):
        config.addinivalue_line("markers", marker)


# The longest files (minutes each in a CI run), handed out first so that make test's two processes
# end near each other rather than one finishing a long file alone at the end. Order only: any
# file may run in either process, and every other file follows in its usual order.
LONGEST_FIRST = (
    "compat/test_models.py",
    "serving/test_serving.py",
    "bench/test_bench_serving.py",
    "serving/test_replicas.py",
    # After the files above: by then every image and the model images' layers are built, which
    # its `make deploy` and model image would otherwise build a second time alongside (a CI run
    # with it first: 530 s, the suite 48 min).
    "swarm/test_swarm.py",
    "scoring/test_scoring.py",
    "team-gateway/test_tracking_replicas.py",
    "mlflow-server/test_authz_attacks.py",
    "team-gateway/test_team_gateway.py",
    "e2e/test_notebooks.py",
    "bench/test_bench_run.py",
    "e2e/test_exercises.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = item.path.as_posix()
        return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: within a file, and among the rest, the order stays


def _env_file(directory: Path) -> Path:
    path = directory / "test.env"
    path.write_text(
        "WORKBENCH_BIND_ADDRESS=127.0.0.1\n"
        "WORKBENCH_MLFLOW_PORT=0\nWORKBENCH_JUPYTER_PORT=0\nWORKBENCH_PORTAINER_PORT=0\n"
        "WORKBENCH_VERSION=local\n"
    )
    return path


def _new_stack(tmp_path_factory, prefix: str, secrets_: dict[str, str]) -> tuple[Stack, bool]:
    project = os.environ.get("WORKBENCH_TEST_PROJECT") if prefix == "wbtest" else None
    if project and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        project += "-" + os.environ["PYTEST_XDIST_WORKER"]  # a kept stack per process: wbdev-gw0...
    keep = bool(project) and os.environ.get("WORKBENCH_TEST_KEEP") == "1"
    project = project or f"{prefix}{uuid.uuid4().hex[:6]}"
    return Stack(project, _env_file(tmp_path_factory.mktemp(project)), secrets_), keep


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request):
    """The workbench as `make up` runs it: secrets given in .env (here: hostile ones)."""
    stack, keep = _new_stack(tmp_path_factory, "wbtest", HOSTILE_SECRETS)
    failed_before = request.session.testsfailed
    try:
        # One build for all of make test's processes: the first builds, the other then finds
        # every layer cached (two classic builds of one image at once would both do the work).
        with open(tmp_path_factory.getbasetemp().parent / "images.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stack.compose("build", timeout=3600)
        stack.up()
        yield stack
    finally:
        if request.session.testsfailed > failed_before or os.environ.get("WORKBENCH_TEST_LOGS"):
            logs = f"===== logs of {stack.project} =====\n{stack.logs()}"
            if hasattr(request.config, "workeroutput"):  # one of make test's processes: to the main one
                request.config.workeroutput.setdefault("stack_logs", []).append(logs)
            else:
                print("\n" + logs)
        if not keep:
            stack.down(volumes=True)


@pytest.fixture
def stack_factory(tmp_path_factory, request):
    """Extra stacks (e.g. plain `docker compose up` with no secrets given); removed afterwards."""
    made: list[Stack] = []

    def make(secrets_: dict[str, str] | None = None) -> Stack:
        stack, _ = _new_stack(tmp_path_factory, "wbextra", secrets_ or {})
        made.append(stack)
        return stack

    yield make
    for stack in made:
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(f"\n===== logs of {stack.project} =====\n{stack.logs()}")
        stack.down(volumes=True)


@pytest.fixture(scope="session")
def _unverified_servers():
    """The fast-paths-off server of the session (see below) while it lasts; removed at the end."""
    held: dict = {"server": None}
    with contextlib.ExitStack() as held["removal"]:
        yield held


@pytest.fixture(scope="module")
def unverified_mlflow_server(stack, _unverified_servers):
    """A second mlflow-server of the stack with its fast paths off (utils/servers.py), for the
    server-level and fault tests that run both ways. One per session, started again for the next
    module that needs it when it is gone: a test that takes the stack down (e2e's restart test,
    `down` + `up`) removes it with the project's other containers, and the networks it was on."""
    held = _unverified_servers
    if held["server"] is None or not running(held["server"].container):
        held["removal"].close()  # the one gone, if any: its leftovers removed
        held["server"] = held["removal"].enter_context(unverified_server(stack))
    return held["server"]


@pytest.fixture
def figure(record_property):
    """figure("[what] measured ..."): a measured figure for the "figures" section at the end of
    the run (printed there also when the test ran in one of make test's other processes)."""
    return lambda text: record_property("figure", text)


_figures: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call":
        _figures.extend(value for name, value in report.user_properties if name == "figure")


_stack_logs: list[str] = []


def pytest_testnodedown(node, error):
    """pytest-xdist: one of make test's processes ended; the logs of its stack, if it had a failure."""
    _stack_logs.extend(getattr(node, "workeroutput", {}).get("stack_logs", []))


def pytest_terminal_summary(terminalreporter):
    for logs in _stack_logs:
        terminalreporter.section("the logs of a stack with a failed test")
        terminalreporter.write_line(logs)
    if _figures:
        terminalreporter.section("figures measured by the tests")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def admin_auth(stack) -> tuple[str, str]:
    return ("admin", HOSTILE_SECRETS["MLFLOW_ADMIN_PASSWORD"])


@pytest.fixture
def mlflow_url(stack) -> str:
    # Looked up per test: a restarted container gets a new ephemeral host port.
    return stack.url("mlflow-server", 5000)


@pytest.fixture
def unique_name(request) -> str:
    """A name no other test (or earlier run on a kept stack) uses: experiments, models."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def portainer_available() -> None:
    if not image_present(portainer_image()):
        pytest.skip(
            f"Portainer's image {portainer_image()} is not on this machine and cannot "
            "be pulled here (no container registry); its runtime checks need it"
        )
