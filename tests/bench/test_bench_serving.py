"""`make bench`'s serving part, for real and in its quick mode (BENCH_SMALL=1, one repetition).

bench/register-model.py registers a model from the jupyter container of the test stack (under a
name of its own, so the bench's own model image on this machine is left alone); bench/serving.sh
serves it with serving/serve.sh, starts the plain `mlflow models serve`, the bare HTTP server and
a setting from the same image, and, for the gateway's cost, one container of it reached directly
and through two gateways (keys off, keys on) and 3 replicas behind a third; it measures them with
the client; bench/report.py renders the serving rows, the settings table and the gateway's cost
from what it wrote. No figure is asserted against a time: only that every figure is there and
sane, kept for each repetition (median, min, max, values), and that the harness leaves no
container or volume behind.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import uuid
from contextlib import redirect_stdout

import pytest

from utils.serving import model_images_removed_afterwards
from utils.stack import REPO, image_present


def load_report():
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def labelled(project: str, label: str, *, what: str = "ps") -> list[str]:
    """The ids of the project's containers (what="ps") or volumes (what="volume") with `label`."""
    command = ["docker", "ps", "-aq"] if what == "ps" else ["docker", "volume", "ls", "-q"]
    filters = ["--filter", f"label=org.workbench.project={project}", "--filter", f"label={label}"]
    return subprocess.run([*command, *filters], capture_output=True, text=True, check=True).stdout.split()


def bench_containers(project: str) -> list[str]:
    return labelled(project, "org.workbench.bench.serving=true") + labelled(
        project, "org.workbench.serving=true"
    )


def bench_volumes(project: str) -> list[str]:
    return labelled(project, "org.workbench.bench.serving=true", what="volume")


@pytest.mark.slow
def test_quick_serving_bench_measures_every_server_and_leaves_nothing_running(stack, tmp_path):
    name = f"bench-test-{uuid.uuid4().hex[:8]}"
    registered = json.loads(
        stack.exec("jupyter", "python3", "-", name, input=(REPO / "bench" / "register-model.py").read_text())
        .stdout.strip()
        .splitlines()[-1]
    )
    assert registered == {"uri": f"models:/{name}@bench", "version": "1"}
    env = {
        **os.environ,
        "BENCH_SMALL": "1",
        "BENCH_REPS": "1",
        "BENCH_MODEL": registered["uri"],
        "WORKBENCH_COMPOSE": f"docker compose -p {stack.project} --env-file {stack.env_file}",
    }
    with model_images_removed_afterwards(name):
        result = subprocess.run(
            [str(REPO / "bench" / "serving.sh"), str(tmp_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        assert bench_containers(stack.project) == [], "the harness left containers behind"
        assert bench_volumes(stack.project) == [], "the harness left its keys volume behind"
        assert image_present(f"workbench-model/{name}:1"), "make serve's image is kept for the next run"

    serving = json.loads((tmp_path / "serving.json").read_text())
    assert serving["reps"] == 1 and serving["small"] is True and serving["clients"] == 8
    gateway_cost = {"direct", "gateway-nokeys", "gateway-keys", "replicas-3"}
    servers = {"served", "plain", "bare", "direct-w1-quiet"} | gateway_cost
    assert servers <= set(serving)

    def one_repetition(figure: dict) -> float:
        # BENCH_REPS=1: every figure's spread is that one repetition's value
        assert len(figure["values"]) == 1, figure
        assert figure["median"] == figure["min"] == figure["max"] == figure["values"][0], figure
        return figure["median"]

    for server in servers:
        one = {k: one_repetition(v) for k, v in serving[server]["1"].items()}
        eight = {k: one_repetition(v) for k, v in serving[server]["8"].items()}
        assert one["requests"] > 0 and eight["requests"] > 0, server
        assert 0 < one["p50_ms"] <= one["p99_ms"], server
        assert 0 < eight["p50_ms"] <= eight["p99_ms"] and eight["req_s"] > 0, server
        assert eight["client_cpu_ms"] > 0, server
    assert all(
        one_repetition(serving["in_process"][k]) > 0
        for k in ("pyfunc_predict_ms", "raw_predict_ms", "handler_ms", "app_ms")
    )

    report = load_report()
    memory_of = report.serving_memory(tmp_path)
    assert set(memory_of) == servers | {"replica-2", "replica-3"}  # the two other replicas: not targets
    # The keys-on gateway refused a request without a key (each of its measured requests, with the
    # bench's key, got 200: the client fails on any other answer); all 3 replicas were up in theirs.
    assert (tmp_path / "gateway_check").read_text().splitlines() == ["without a key: 401", "replicas up: 3"]
    rows = {cells[0]: cells for cells in report.serving_rows(serving, memory_of)}
    assert set(rows) == {
        "serving one row, 1 client: p50 / p99 ms",
        "serving, 8 clients: requests/s",
        "serving, 8 clients: p50 / p99 ms",
        "serving container memory (MiB) / processes",
    }
    assert "predict +" in rows["serving one row, 1 client: p50 / p99 ms"][3]
    # every target with its verdict on the worst repetition
    assert rows["serving one row, 1 client: p50 / p99 ms"][5] in (
        "p50 ≤ 2× floor: met",
        "p50 ≤ 2× floor: not met",
    )
    assert rows["serving, 8 clients: requests/s"][5] in ("≥ 2× plain: met", "≥ 2× plain: not met")
    text = io.StringIO()
    with redirect_stdout(text):
        report.print_serving_settings(serving, memory_of, f"workbench-model/{name}:1")
    table = [line for line in text.getvalue().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(servers - gateway_cost)  # the header, then one line a setting
    assert any(line.startswith("| `make serve` now") for line in table)

    # The gateway's cost: direct | through the gateway | its cost | the target, its verdict paired
    # (each repetition's gateway against the same repetition's direct) with the pairs' spread.
    cost = {cells[0]: cells for cells in report.gateway_rows(serving, memory_of)}
    assert set(cost) == {
        "1 client: p50 / p99 ms, keys off",
        "1 client: p50 / p99 ms, keys on",
        "8 clients: requests/s, keys off",
        "8 clients: requests/s, keys on",
        "8 clients: p50 / p99 ms, keys off",
        "8 clients: p50 / p99 ms, keys on",
        "memory (MiB) / processes: the model; the gateway",
        "8 clients: requests/s through the gateway (keys off), 1 → 3 replicas",
    }
    for keys in ("keys off", "keys on"):
        latency, throughput = cost[f"1 client: p50 / p99 ms, {keys}"], cost[f"8 clients: requests/s, {keys}"]
        assert latency[3].endswith(" at p50") and latency[3][0] in "+-", latency
        assert re.fullmatch(
            r"≤ 1 ms added at p50: (met|not met) \(paired, by repetition [-+0-9.]+ ms(–[-+0-9.]+ ms)?\)",
            latency[4],
        ), latency
        assert "% of direct" in throughput[3], throughput
        assert re.fullmatch(
            r"≥ 90% of direct: (met|not met) \(paired, by repetition [0-9]+%(–[0-9]+%)?\)", throughput[4]
        ), throughput
    replicas = cost["8 clients: requests/s through the gateway (keys off), 1 → 3 replicas"]
    assert replicas[1].startswith("1 replica: ") and replicas[2].startswith("3 replicas: "), replicas
    text = io.StringIO()
    with redirect_stdout(text):
        report.print_gateway_cost(serving, memory_of, "2")
    table = [line for line in text.getvalue().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(cost)
    assert "**1 → 3 replicas**" in text.getvalue() and "**A bigger machine**" in text.getvalue()

    # bench/serving.sh run alone: report.py renders its work folder (no tracking figures).
    alone = subprocess.run(
        ["python3", str(REPO / "bench" / "report.py"), str(tmp_path), "test"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "the serving part alone" in alone and "#### Serving: the gateway's cost" in alone, alone
