"""Renders one benchmark run (bench/run.sh's work folder) as the Markdown table of the README:
every figure side by side with the plain setup and the floor, the ratio, and the target; then,
when the serving benchmark ran (bench/serving.sh), a table of the serving settings tried."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def read(folder: Path, name: str) -> str | None:
    path = folder / name
    return path.read_text().strip() if path.exists() else None


def mib(text: str | None) -> float | None:
    if not text:
        return None
    number, unit = re.match(r"([\d.]+)\s*([KMG]i?B)", text).groups()
    return float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "KB": 1 / 1000, "MB": 1, "GB": 1000}[unit]


def main() -> None:
    folder, stamp = Path(sys.argv[1]), sys.argv[2]
    r = json.loads((folder / "results.json").read_text())
    images = json.loads(read(folder, "images.json") or "{}")
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(figure, workbench, plain, floor, ratio, target):
        rows.append((figure, workbench, plain, floor, ratio, target))

    def f(x, digits=0):
        return "–" if x is None else f"{x:,.{digits}f}"

    w1, p1 = r["workbench.log_metric.1"], r["plain.log_metric.1"]
    w8, p8 = r["workbench.log_metric.8"], r["plain.log_metric.8"]
    row(
        "log_metric, 1 client: calls/s",
        f(w1["calls_per_s"]),
        f(p1["calls_per_s"]),
        "",
        f"{w1['calls_per_s'] / p1['calls_per_s']:.1f}×",
        "",
    )
    row(
        "log_metric, 1 client: p50 / p99 ms",
        f"{w1['p50_ms']:.1f} / {w1['p99_ms']:.1f}",
        f"{p1['p50_ms']:.1f} / {p1['p99_ms']:.1f}",
        "",
        "",
        "p50 ≤ 5 ms",
    )
    row(
        "log_metric, 8 clients: calls/s",
        f(w8["calls_per_s"]),
        f(p8["calls_per_s"]),
        "",
        f"{w8['calls_per_s'] / p8['calls_per_s']:.1f}×",
        "≥ 3× plain",
    )
    row(
        "log_metric, 8 clients: p50 / p99 ms",
        f"{w8['p50_ms']:.1f} / {w8['p99_ms']:.1f}",
        f"{p8['p50_ms']:.1f} / {p8['p99_ms']:.1f}",
        "",
        "",
        "",
    )
    row(
        "log_metric, 8 clients: MLflow's client's own CPU per call, ms",
        f(w8["client_cpu_ms"], 2),
        f(p8["client_cpu_ms"], 2),
        "",
        "",
        "",
    )
    wb, pb, ev, cp = (
        r["workbench.log_batch.8"],
        r["plain.log_batch.8"],
        r["floor.execute_values.8"],
        r["floor.copy.8"],
    )
    row(
        "log_batch (1000/call), 8 clients: metrics/s",
        f(wb["metrics_per_s"]),
        f(pb["metrics_per_s"]),
        f"{f(ev)} execute_values, {f(cp)} COPY",
        f"{wb['metrics_per_s'] / ev:.0%} of execute_values",
        "≥ 45 % of execute_values",
    )
    row(
        "log_batch, 8 clients: MLflow's client's own CPU per call, ms",
        f(wb["client_cpu_ms"]),
        f(pb["client_cpu_ms"]),
        "",
        "",
        "",
    )
    ws, ps = r["workbench.search_runs_ms"], r["plain.search_runs_ms"]
    row(
        f"search_runs, {r['workbench.search_runs_found']} of the runs (`metrics.rmse < 0.8`): p50 ms",
        f(ws),
        f(ps),
        "",
        f"{ws / ps:.2f}×",
        "≤ 0.5× plain",
    )
    wh, ph = r["workbench.search_runs_http_ms"], r["plain.search_runs_http_ms"]
    row(
        "search_runs: of which the server's answer (the same request as raw HTTP), ms",
        f(wh),
        f(ph),
        "",
        f"{wh / ph:.2f}×; the client's own decoding {f(ws - wh)} / {f(ps - ph)} ms",
        "",
    )
    row(
        "a run page's API calls: p50 ms", f(r["workbench.run_page_ms"]), f(r["plain.run_page_ms"]), "", "", ""
    )
    wa, pa, fa = r["workbench.artifacts"], r["plain.artifacts"], r["floor.ftp"]
    row(
        "one big artifact: upload MB/s",
        f(wa["up_mb_s"]),
        f(pa["up_mb_s"]),
        f"{f(fa['up_mb_s'])} ftplib",
        f"{wa['up_mb_s'] / fa['up_mb_s']:.0%} of ftplib",
        "≥ 50 % of ftplib",
    )
    row(
        "one big artifact: download MB/s",
        f(wa["down_mb_s"]),
        f(pa["down_mb_s"]),
        f"{f(fa['down_mb_s'])} ftplib, {f(r['floor.local_copy_mb_s'])} local copy",
        f"{wa['down_mb_s'] / fa['down_mb_s']:.0%} of ftplib",
        "≥ 50 % of ftplib",
    )
    row(
        "small files (10 KB): upload files/s",
        f(wa["up_files_s"]),
        f(pa["up_files_s"]),
        f"{f(fa['up_files_s'])} ftplib",
        f"{wa['up_files_s'] / pa['up_files_s']:.1f}× plain",
        "≥ 5× plain",
    )
    row(
        "small files (10 KB): download files/s",
        f(wa["down_files_s"]),
        f(pa["down_files_s"]),
        f"{f(fa['down_files_s'])} ftplib",
        f"{wa['down_files_s'] / pa['down_files_s']:.1f}× plain",
        "≥ 5× plain",
    )
    row(
        "small files: MLflow's client's own CPU per file up / down, ms",
        f"{wa['up_cpu_ms']:.2f} / {wa['down_cpu_ms']:.2f}",
        f"{pa['up_cpu_ms']:.2f} / {pa['down_cpu_ms']:.2f}",
        "",
        "",
        "",
    )
    wm, pm = mib(read(folder, "mem_mlflow-server")), mib(read(folder, "mem_plain-mlflow"))
    if wm and pm:
        row(
            "tracking server memory (MiB) / processes",
            f"{wm:,.0f} / {read(folder, 'procs_mlflow-server')}",
            f"{pm:,.0f} / {read(folder, 'procs_plain-mlflow')}",
            "",
            f"{wm / pm:.0%} of plain",
            "≤ 30 % of plain",
        )
    startup = read(folder, "startup_ms")
    if startup:
        row("`up` to all healthy, images built: s", f(int(startup) / 1000, 1), "", "", "", "≤ 30 s")
    if images:
        sizes = ", ".join(f"{k.split('/')[-1]} {v / 1e6:,.0f}" for k, v in images["images"].items())
        total = images.get("unique_total") or images["sum"]
        row("image sizes, MB (shared layers once)", f"{total / 1e6:,.0f} in all", "", "", sizes, "")
    serving = json.loads(read(folder, "serving.json") or "{}")
    memory_of = serving_memory(folder)
    if serving:
        rows.extend(serving_rows(serving, memory_of))

    print(f"### Benchmark {stamp}\n")
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    load = (
        f"; load average (1, 5, 15 min) {read(folder, 'load_start')} at the start, "
        f"{read(folder, 'load_end')} at the end"
        if read(folder, "load_end")
        else ""
    )
    print(
        f"Machine: {os.cpu_count()} cores, {memory:.0f} GiB; median of {r['reps']} repetitions"
        f"{' (BENCH_SMALL: small counts)' if r.get('small') else ''}{load}.\n"
    )
    print("| figure | workbench | plain setup | floor | ratio | target |")
    print("|---|---|---|---|---|---|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    if serving:
        served_env = (read(folder, "served_env") or "").split()
        if served_env:  # what serve.sh set, so the label follows its defaults
            front = "" if "DISABLE_NGINX=true" in served_env else "nginx + uvicorn, "
            SETTINGS["served"] = "`make serve` now: " + front + ", ".join(f"`{v}`" for v in served_env)
        print_serving_settings(serving, memory_of, read(folder, "serve_image_name") or "the model image")


# The servers of the serving benchmark (bench/serving.sh), in the order of the settings table.
SETTINGS = {
    "served": "`make serve` now: nginx + uvicorn, `MLFLOW_MODELS_WORKERS=2`",
    "nginx-w1": "nginx + uvicorn, `MLFLOW_MODELS_WORKERS=1`",
    "nginx-w2-quiet": "nginx + uvicorn, `MLFLOW_MODELS_WORKERS=2`, `UVICORN_ACCESS_LOG=false`",
    "nginx-w4": "nginx + uvicorn, `MLFLOW_MODELS_WORKERS=4`",
    "direct-w1": "`DISABLE_NGINX=true`, `MLFLOW_MODELS_WORKERS=1`",
    "direct-w1-quiet": "`DISABLE_NGINX=true`, `MLFLOW_MODELS_WORKERS=1`, `UVICORN_ACCESS_LOG=false`",
    "direct-w2": "`DISABLE_NGINX=true`, `MLFLOW_MODELS_WORKERS=2`",
    "direct-w4": "`DISABLE_NGINX=true`, `MLFLOW_MODELS_WORKERS=4`",
    "uvloop-nginx-w2-quiet": "uvloop + httptools in the image (not an env setting), nginx + uvicorn, "
    "`MLFLOW_MODELS_WORKERS=2`, `UVICORN_ACCESS_LOG=false`",
    "uvloop-direct-w2-quiet": "uvloop + httptools in the image (not an env setting), `DISABLE_NGINX=true`, "
    "`MLFLOW_MODELS_WORKERS=2`, `UVICORN_ACCESS_LOG=false`",
    "uvloop-direct-w1-quiet": "uvloop + httptools in the image (not an env setting), `DISABLE_NGINX=true`, "
    "`MLFLOW_MODELS_WORKERS=1`, `UVICORN_ACCESS_LOG=false`",
    "plain": "plain `mlflow models serve` (defaults: 1 uvicorn worker)",
    "bare": "floor: bare HTTP (raw ASGI app, uvicorn, 1 worker)",
}


def serving_rows(serving: dict, memory_of: dict[str, str]) -> list[tuple[str, str, str, str, str, str]]:
    """The serving figures of the main table: `make serve` | plain `mlflow models serve` | floor."""
    sv, pl, bare, floor = serving["served"], serving["plain"], serving["bare"], serving_floor(serving)
    clients = serving["clients"]
    rows = [
        (
            "serving one row, 1 client: p50 / p99 ms",
            ms(sv["1"]),
            ms(pl["1"]),
            f"{serving['in_process']['pyfunc_predict_ms']:.2f} predict + {bare['1']['p50_ms']:.2f} bare HTTP = {floor:.2f}",
            f"{sv['1']['p50_ms'] / floor:.1f}× floor",
            "p50 ≤ 2× floor",
        ),
        (
            f"serving, {clients} clients: requests/s",
            f"{sv['8']['req_s']:,.0f}",
            f"{pl['8']['req_s']:,.0f}",
            f"{bare['8']['req_s']:,.0f} bare HTTP (the client's ceiling)",
            f"{sv['8']['req_s'] / pl['8']['req_s']:.1f}× plain",
            "≥ 2× plain",
        ),
        (
            f"serving, {clients} clients: p50 / p99 ms",
            ms(sv["8"]),
            ms(pl["8"]),
            f"{ms(bare['8'])} bare HTTP",
            "",
            "",
        ),
    ]
    if "served" in memory_of and "plain" in memory_of:
        rows.append(
            (
                "serving container memory (MiB) / processes",
                memory_of["served"],
                memory_of["plain"],
                "",
                "",
                "",
            )
        )
    return rows


def ms(figures: dict) -> str:
    return f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f}"


def serving_floor(serving: dict) -> float:
    """The floor of one served request: in-process predict + a bare HTTP round trip (p50s)."""
    return serving["in_process"]["pyfunc_predict_ms"] + serving["bare"]["1"]["p50_ms"]


def serving_memory(folder: Path) -> dict[str, str]:
    out = {}
    for line in (read(folder, "serving_mem.tsv") or "").splitlines():
        name, memory, processes = line.split("\t")
        if mib(memory):
            out[name] = f"{mib(memory):,.0f} / {processes.strip()}"
    return out


def print_serving_settings(serving: dict, memory_of: dict[str, str], image: str) -> None:
    floor, plain = serving_floor(serving), serving["plain"]["8"]["req_s"]
    ip, clients, nan = serving["in_process"], serving["clients"], float("nan")
    sv8 = serving["served"]["8"]
    fastest = max(serving[name]["8"]["req_s"] for name in SETTINGS if name in serving and name != "bare")
    limit = (
        "over 3× any model server's rate: it is not what limits the figures, though it takes its "
        "share of the same cores"
        if serving["bare"]["8"]["req_s"] >= 3 * fastest
        else "**not 3× the fastest model server's rate: the client may be what limits the figures**"
    )
    print(f"\n#### Serving: the settings tried ({image}, all in this run)\n")
    print(
        f"- **Floor**: `model.predict` of the row, in-process, {ip['pyfunc_predict_ms']:.2f} ms + a bare HTTP "
        f"round trip {serving['bare']['1']['p50_ms']:.2f} ms = **{floor:.2f} ms** (p50s)."
    )
    print(
        f"- **Where a request's time goes**, in-process, no HTTP (p50): the scikit-learn estimator's "
        f"`predict` {ip.get('raw_predict_ms', nan):.2f} ms; `model.predict` (pyfunc: with the schema check) "
        f"{ip['pyfunc_predict_ms']:.2f} ms; MLflow's request handler (`invocations`: JSON in, DataFrame, "
        f"predict, JSON out) {ip.get('handler_ms', nan):.2f} ms; MLflow's whole scoring app (FastAPI, its "
        f"timeout middleware, the handler in a thread) called as an ASGI app {ip.get('app_ms', nan):.2f} ms."
    )
    print(
        f"- **How**: one row of the model's input example per request; median of {serving['reps']} repetitions, "
        f"the servers taken in turn, each: 1 client for {serving['latency_requests']:,} requests or "
        f"{serving['latency_seconds']:.0f} s, then {clients} clients for {serving['requests']:,} requests or "
        f"{serving['seconds']:.0f} s, whichever ends first; every server published on 127.0.0.1 as `make serve` "
        "publishes it (through docker-proxy)."
    )
    print(
        f"- **Client**: {clients} processes, one keep-alive connection each (http.client), on the same "
        f"{serving['cpus']} cores as the servers. It spends {sv8['client_cpu_ms']:.2f} ms of CPU per request "
        f"({sv8['client_cores']:.2f} of a core against `make serve` at {clients} clients) and drives the bare "
        f"HTTP server at {serving['bare']['8']['req_s']:,.0f} requests/s: {limit}.\n"
    )
    print(
        f"| setting | 1 client: p50 / p99 ms | {clients} clients: requests/s | {clients} clients: p50 / p99 ms "
        "| memory MiB / processes | p50 ≤ 2× floor | requests/s ≥ 2× plain |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, label in SETTINGS.items():
        if name not in serving:
            continue
        r = serving[name]
        latency = r["1"]["p50_ms"] / floor
        throughput = r["8"]["req_s"] / plain
        if name in ("plain", "bare"):  # the references: no target of their own
            verdicts = f"{latency:.1f}×", f"{throughput:.1f}×"
        else:
            verdicts = (
                f"{'yes' if latency <= 2 else 'no'}: {latency:.1f}×",
                f"{'yes' if throughput >= 2 else 'no'}: {throughput:.1f}×",
            )
        print(
            f"| {label} | {ms(r['1'])} | {r['8']['req_s']:,.0f} | {ms(r['8'])} | {memory_of.get(name, '–')} | "
            f"{verdicts[0]} | {verdicts[1]} |"
        )


if __name__ == "__main__":
    main()
