"""Crashing a service the way the kernel or a failing host would, and timing its recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from utils.stack import Stack, container_state
from utils.wait import wait_until


def crash(stack: Stack, service: str) -> float:
    """SIGKILL the container's PID 1 from the host: a crash, as the OOM killer would do it.

    (`docker kill` would count as a manual stop, and Docker's restart policy ignores those;
    a crash is what the policy is for.) Returns the monotonic time of the kill."""
    pid = stack.inspect(service)["State"]["Pid"]
    assert pid, f"{service} is not running"
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def healthy(container: str) -> bool:
    return container_state(container, "Health.Status") == "healthy"


def wait_container_healthy(container: str, *, timeout: float = 120) -> float:
    """Wait for the container's healthcheck to pass; returns the monotonic time it did."""
    wait_until(lambda: healthy(container), timeout=timeout, interval=0.5, what=f"{container} healthy")
    return time.monotonic()


def wait_healthy(stack: Stack, service: str, *, timeout: float = 120) -> float:
    """Wait for a service's healthcheck to pass again; returns the monotonic time it did. (A
    crash or a restart keeps the container, so its id stays.)"""
    return wait_container_healthy(stack.container_id(service), timeout=timeout)


def start_in(stack: Stack, service: str, code: str, *args: str) -> subprocess.Popen:
    """Start Python code inside a service's container, in the background; stdout is a pipe."""
    command = [
        "docker",
        "compose",
        "-p",
        stack.project,
        "--env-file",
        str(stack.env_file),
        "exec",
        "-T",
        service,
        "python3",
        "-u",
        "-c",
        code,
        *args,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **stack.secrets},
    )


# Two clients (threads) logging metrics as fast as they can for `duration` seconds into runs of
# their own, on the server at MLFLOW_TRACKING_URI or the one given; prints "started" once the
# runs exist, then a JSON report of what was acknowledged, and each call's start (epoch seconds)
# and duration. Optional JSON settings: "env" (more variables for MLflow's client, e.g.
# MLFLOW_TRACKING_SERVER_CERT_PATH), "unset" (variables to remove first) and "resolve" ([suffix, host]: names ending in suffix resolve
# as host, as a team's DNS would send mlflow.<name> to the gateway).
LOAD = r"""
import json, os, socket, sys, threading, time
experiment, duration, retries = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4 and sys.argv[4]:
    os.environ["MLFLOW_TRACKING_URI"] = sys.argv[4]
settings = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
for name in settings.get("unset", []):
    os.environ.pop(name, None)
os.environ.update(settings.get("env", {}))
if "resolve" in settings:
    suffix, target = settings["resolve"]
    real = socket.getaddrinfo
    socket.getaddrinfo = lambda host, *a, **k: real(target if str(host).endswith(suffix) else host, *a, **k)
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = retries
os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
import mlflow
from mlflow import MlflowClient
client = MlflowClient()
exp_id = mlflow.set_experiment(experiment).experiment_id
runs = [client.create_run(exp_id).info.run_id for _ in range(2)]
report = {r: {"acked": [], "errors": 0, "calls": 0, "last_error": None, "first_ack": None, "last_ack": None,
              "latencies": []}
          for r in runs}
print("started", flush=True)
t0 = time.monotonic()
def worker(run_id):
    step = 0
    while time.monotonic() - t0 < duration:
        report[run_id]["calls"] += 1
        started, began = time.time(), time.perf_counter()
        try:
            client.log_metric(run_id, "load", float(step), step=step)
            report[run_id]["acked"].append(step)
            report[run_id]["first_ack"] = report[run_id]["first_ack"] or time.time()
            report[run_id]["last_ack"] = time.time()
        except Exception as exc:
            report[run_id]["errors"] += 1
            report[run_id]["last_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
            time.sleep(0.2)
        report[run_id]["latencies"].append((round(started, 4), round(time.perf_counter() - began, 5)))
        step += 1
threads = [threading.Thread(target=worker, args=(r,)) for r in runs]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(report))
"""


def start_load(
    stack: Stack,
    experiment: str,
    duration: int,
    retries: int,
    server=None,
    *,
    uri: str = "",
    settings: dict | None = None,
) -> subprocess.Popen:
    """The load from JupyterLab, on the stack's mlflow-server, on `server` (utils/servers.py) or
    at `uri`, with `settings` (LOAD's)."""
    uri = f"http://{server.host}:5000" if server else uri
    args = [uri, json.dumps(settings)] if settings else ([uri] if uri else [])
    process = start_in(stack, "jupyter", LOAD, experiment, str(duration), str(retries), *args)
    assert process.stdout.readline().strip() == "started", process.stderr.read()
    return process


def finish(process: subprocess.Popen, timeout: float) -> dict:
    # "errors, not hangs": every client returns within its own time budget plus its timeouts.
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def steps_in_postgres(stack: Stack, run_ids) -> dict[str, set[int]]:
    ids = ",".join(f"'{r}'" for r in run_ids)
    rows = stack.psql(f"SELECT run_uuid, step FROM metrics WHERE key = 'load' AND run_uuid IN ({ids})")
    found: dict[str, set[int]] = {r: set() for r in run_ids}
    for run_uuid, step in rows:
        found[run_uuid].add(int(step))
    return found


def check_acknowledged_writes(stack: Stack, *reports) -> tuple[int, int]:
    """Every acknowledged write is in Postgres (else fails, naming the lost ones); returns
    (acknowledged, found of those)."""
    acked = {r: set(v["acked"]) for report in reports for r, v in report.items()}
    found = steps_in_postgres(stack, acked)
    for run_id, steps in acked.items():
        missing = steps - found[run_id]
        assert not missing, (
            f"run {run_id}: {len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
        )
    return sum(len(s) for s in acked.values()), sum(len(found[r] & acked[r]) for r in acked)


def errors(report: dict) -> int:
    return sum(v["errors"] for v in report.values())


def last_errors(report: dict) -> list:
    return [v["last_error"] for v in report.values() if v["last_error"]]


def latencies(report: dict, since: float = 0.0, until: float = float("inf")) -> list[float]:
    """The durations (seconds) of the calls that started in [since, until) (epoch seconds)."""
    return sorted(d for v in report.values() for started, d in v["latencies"] if since <= started < until)


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))]
