"""Make variables never reach a shell as text: a value with quotes, backticks or `$(...)` given to
a make target arrives verbatim where it is used, and runs nothing.

No stack needed: the targets run against a Compose project that does not exist (the scripts stop
early with their own error, which quotes the value), or with COMPOSE set to a stub that prints
the arguments it was given. Each variable's injection would create its own marker file."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid

import pytest

from utils.stack import REPO

# As typed on a make command line (`$$` is make's escape of a `$`), with the marker's path.
INJECTIONS = {
    "backticks": "x`touch {marker}`",
    "double quotes": 'x"; touch {marker}; echo "',
    "single quotes": "x'; touch {marker}; echo '",
    "command substitution": "x$$(touch {marker})",
}
SERVE = [
    "MODEL",
    "PORT",
    "WORKERS",
    "BIND_ADDRESS",
    "SERVE_TIMEOUT",
    "REBUILD",
    "ENV_FILE",
    "NAME",
    "WORKBENCH_SERVING_KEYS",
    "RATE_LIMIT",
    "BODY_LIMIT",
]
SCORE = [
    "MODEL",
    "INPUT",
    "OUTPUT",
    "ID",
    "ENGINE",
    "MASTER",
    "CHUNK",
    "MEMORY",
    "SPARK_CONF",
    "DRIVER_HOST",
    "DRIVER_PORT",
    "ENV_FILE",
]
STUB = "#!/usr/bin/env python3\nimport json, sys\nprint('STUB-ARGV ' + json.dumps(sys.argv[1:]))\n"


@pytest.fixture(params=list(INJECTIONS))
def inject(request, tmp_path):
    """inject(name) -> (the value for make, the value the recipe must hand on); markers()."""
    template = INJECTIONS[request.param]

    def value(name: str) -> tuple[str, str]:
        typed = template.format(marker=tmp_path / f"marker-{name}")
        return typed, typed.replace("$$", "$")

    value.markers = lambda: sorted(p.name for p in tmp_path.glob("marker-*"))
    return value


def make(*args: str, **variables: str) -> subprocess.CompletedProcess:
    # The caller's environment must not supply any of the settings.
    env = {k: v for k, v in os.environ.items() if k not in {*SERVE, *SCORE, "PROJECT", "COMPOSE"}}
    # Given, so that the Makefile does not ask pip for it (a second per make).
    env.setdefault("PIP_INDEX_URL", "")
    command = ["make", "--no-print-directory", *args, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(
        command,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stub_argv(result: subprocess.CompletedProcess) -> list[str]:
    [line] = [line for line in result.stdout.splitlines() if line.startswith("STUB-ARGV ")]
    return json.loads(line.removeprefix("STUB-ARGV "))


@pytest.fixture
def stub(tmp_path) -> str:
    """A COMPOSE that prints its arguments instead of running anything."""
    path = tmp_path / "compose-stub"
    path.write_text(STUB)
    path.chmod(0o755)
    return str(path)


def no_project() -> str:
    return f"wbnone{uuid.uuid4().hex[:8]}"


def test_serve_targets_hand_every_setting_over_verbatim(inject):
    prefix = no_project()
    project, project_expected = (prefix + v for v in inject("PROJECT"))
    values = {name: inject(name) for name in SERVE}
    typed = {name: v[0] for name, v in values.items()}

    serve = make("serve", PROJECT=project, **typed)
    assert serve.returncode != 0
    assert f"PORT={values['PORT'][1]} is not a port number" in serve.stderr, serve.stderr

    stop = make("serve-stop", PROJECT=project, **typed)
    assert stop.returncode == 0, stop.stderr
    assert f"no served model of project {project_expected}" in stop.stdout, stop.stdout
    assert f"for {values['MODEL'][1]}" in stop.stdout, stop.stdout

    logs = make("serve-logs", PROJECT=project, **typed)
    assert logs.returncode != 0
    assert f"for {values['MODEL'][1]}" in logs.stderr, logs.stderr

    ps = make("serve-ps", PROJECT=project, **typed)
    assert ps.returncode == 0, ps.stderr

    for target in ("serve-key", "serve-key-revoke"):
        key = make(target, PROJECT=project, **typed)
        assert key.returncode != 0
        assert f"NAME='{values['NAME'][1]}' is not a key name" in key.stderr, key.stderr
    assert inject.markers() == [], "a make variable ran as a shell command"


def test_score_hands_every_setting_over_verbatim(inject):
    project = no_project() + inject("PROJECT")[0]
    values = {name: inject(name) for name in SCORE}
    score = make("score", PROJECT=project, **{name: v[0] for name, v in values.items()})
    assert score.returncode != 0
    assert f"INPUT={values['INPUT'][1]}: unknown extension" in score.stderr, score.stderr
    assert inject.markers() == [], "a make variable ran as a shell command"


def test_compose_targets_pass_project_and_names_as_arguments(inject, stub):
    prefix = no_project()
    project, project_expected = (prefix + v for v in inject("PROJECT"))

    assert stub_argv(make("ps", PROJECT=project, COMPOSE=stub)) == ["-p", project_expected, "ps", "-a"]
    # A service name is the target's stem: never expanded by make, so it arrives as typed.
    for target, command in (("logs", ["logs", "-f", "--tail=100"]), ("shell", ["exec"])):
        service = inject(target)[0]
        argv = stub_argv(make(f"{target}/{service}", PROJECT=project, COMPOSE=stub))
        assert argv == ["-p", project_expected, *command, service, *(["bash"] if target == "shell" else [])]

    refused = make("clean", FORCE=inject("FORCE")[0], PROJECT=project, COMPOSE=stub)
    assert refused.returncode != 0 and "STUB-ARGV" not in refused.stdout  # it asked; no answer
    forced = make("clean", FORCE="1", PROJECT=project, COMPOSE=stub)
    assert stub_argv(forced) == ["-p", project_expected, "down", "--volumes", "--remove-orphans"]
    assert inject.markers() == [], "a make variable ran as a shell command"


def test_run_example_splits_params_like_a_shell_but_runs_nothing(inject, stub):
    example, entry, experiment, extra = (
        inject(name) for name in ("EXAMPLE", "ENTRY", "EXPERIMENT", "PARAMS")
    )
    result = make(
        "run-example",
        EXAMPLE=example[0],
        ENTRY=entry[0],
        EXPERIMENT=experiment[0],
        PARAMS=f'-P alpha=0.3 -P "name=a b" {extra[0]}',
        PROJECT="wb",
        COMPOSE=stub,
    )
    assert stub_argv(result) == [
        "-p",
        "wb",
        "exec",
        "-T",
        "jupyter",
        "mlflow",
        "run",
        f"examples/{example[1]}",
        "-e",
        entry[1],
        "--env-manager",
        "local",
        "--experiment-name",
        experiment[1],
        "-P",
        "alpha=0.3",
        "-P",
        "name=a b",
        *shlex.split(extra[1]),
    ]
    assert inject.markers() == [], "a make variable ran as a shell command"


def test_pytest_args_are_split_like_a_shell_but_run_nothing(inject):
    # Its prerequisites (images, .venv) are taken as done: only the recipe is under test.
    skip = [
        arg
        for target in ("test-unit", "prerequisites", "ca-certificates", "base-image", ".venv")
        for arg in ("-o", target)
    ]
    result = make(*skip, "test", PYTEST_ARGS=f"--version {inject('PYTEST_ARGS')[0]}")
    assert result.returncode == 0, result.stderr
    assert "pytest" in result.stdout + result.stderr
    assert inject.markers() == [], "a make variable ran as a shell command"


def test_an_unbalanced_quote_in_params_fails_instead_of_running_without_them(stub):
    result = make("run-example", PARAMS='-P "alpha=0.3', PROJECT="wb", COMPOSE=stub)
    assert result.returncode != 0 and "STUB-ARGV" not in result.stdout
    assert "PARAMS: No closing quotation" in result.stderr, result.stderr


# Names a recipe may use: make's own, the Makefile's macros, which take no user values, the
def test_deploy_targets_hand_every_setting_over_verbatim(inject):
    """make deploy-serve / deploy-ps / deploy-rm (swarm/deploy.sh): the stack's name is checked
    before anything runs, and quoted back verbatim."""
    prefix = no_project()
    stack, stack_expected = (prefix + v for v in inject("STACK"))
    typed = {
        name: inject(name)[0] for name in ("MODEL", "PORT", "REPLICAS", "ENV_FILE", "WORKBENCH_REGISTRY")
    }
    for target in ("deploy-serve", "deploy-ps", "deploy-rm"):
        result = make(target, STACK=stack, **typed)
        assert result.returncode != 0
        assert f"STACK={stack_expected}: 1-40 lower-case letters" in result.stderr, result.stderr
    assert inject.markers() == [], "a make variable ran as a shell command"


# macros' parameters (literal words of the Makefile's own calls) and make's `if` over them.
ALLOWED = {"DC", "START_SERVICES", "call", "if", "MAKEFILE_LIST", "MAKE", "1", "2"}


def test_no_recipe_interpolates_a_make_variable():
    """Every recipe of every make file: a `$(VAR)` or `$*` would splice a value into shell text
    (`$$` is the shell's own `$`). Values are read from the environment ("$$VAR") instead."""
    found = []
    for name in ("Makefile", "serving/serving.mk", "scoring/scoring.mk", "swarm/swarm.mk"):
        for number, line in enumerate((REPO / name).read_text().splitlines(), 1):
            macro = re.match(r"(DC|START_SERVICES|split_words) *:?=", line)
            if not (line.startswith("\t") or macro):
                continue
            code = line.replace("$$", "")
            for ref in re.findall(r"\$[({](\w+)|\$([*<^?@])", code):
                if (ref[0] or ref[1]) not in ALLOWED:
                    found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
