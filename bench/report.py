"""Renders one benchmark run (bench/run.sh's work folder) as the Markdown table of the README:
every figure side by side with the plain setup and the floor, the ratio, and the target; then,
when the serving benchmark ran (bench/serving.sh), a table of the serving settings tried and one of
the gateway's cost. A work folder of bench/serving.sh run alone (serving.json, no results.json)
gets the serving part of the table and those two tables:

    python3 bench/report.py WORK STAMP"""

from __future__ import annotations

import json
import os
import re
import statistics
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


def spread(x) -> dict:
    """A figure as bench.py and serving.py write it (bench/spread.py: median, min, max, values);
    a figure measured once (memory, start-up) as a spread of that one value."""
    return x if isinstance(x, dict) else {"median": x, "min": x, "max": x, "values": [x]}


def fig(x, digits: int = 0) -> str:
    """`median (min–max)` over the repetitions; the value alone when they do not differ."""
    if x is None:
        return "–"
    s = spread(x)
    text = f"{s['median']:,.{digits}f}"
    return text if s["min"] == s["max"] else f"{text} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f})"


def ratio(ours, theirs, more_is_better: bool = True) -> tuple[float, float]:
    """The ratio of the medians, and the worst case: our worst repetition against the other side's
    best (min of ours over max of theirs when more is better, max over min when less is). The
    repetitions of the two sides are not paired: bench.py measures one side's repetitions, then
    the other's; so every pairing is possible, and the worst case holds for all of them."""
    o, t = spread(ours), spread(theirs)
    if more_is_better:
        return o["median"] / t["median"], o["min"] / t["max"]
    return o["median"] / t["median"], o["max"] / t["min"]


def times(r: tuple[float, float], digits: int = 1, suffix: str = "") -> str:
    """A ratio as `2.0× (worst 1.8×)`; the worst case left out when it is the median's."""
    median, worst = (f"{x:.{digits}f}×" for x in r)
    return f"{median}{suffix}" if median == worst else f"{median}{suffix} (worst {worst})"


def percent(r: tuple[float, float], of: str) -> str:
    median, worst = (f"{x:.0%}" for x in r)
    return f"{median} of {of}" if median == worst else f"{median} of {of} (worst {worst})"


def verdict(target: str, met: bool) -> str:
    """A target with its verdict, decided on the worst repetition (or the worst-case ratio)."""
    return f"{target}: {'met' if met else 'not met'}"


def main() -> None:
    folder, stamp = Path(sys.argv[1]), sys.argv[2]
    if not (folder / "results.json").exists() and (folder / "serving.json").exists():
        serving_only(folder, stamp)
        return
    r = json.loads((folder / "results.json").read_text())
    images = json.loads(read(folder, "images.json") or "{}")
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(figure, workbench, plain, floor, ratio, target):
        rows.append((figure, workbench, plain, floor, ratio, target))

    def worst(x, more_is_better: bool = True) -> float:
        return spread(x)["min" if more_is_better else "max"]

    w1, p1 = r["workbench.log_metric.1"], r["plain.log_metric.1"]
    w8, p8 = r["workbench.log_metric.8"], r["plain.log_metric.8"]
    row(
        "log_metric, 1 client: calls/s",
        fig(w1["calls_per_s"]),
        fig(p1["calls_per_s"]),
        "",
        times(ratio(w1["calls_per_s"], p1["calls_per_s"])),
        "",
    )
    row(
        "log_metric, 1 client: p50 / p99 ms",
        f"{fig(w1['p50_ms'], 1)} / {fig(w1['p99_ms'], 1)}",
        f"{fig(p1['p50_ms'], 1)} / {fig(p1['p99_ms'], 1)}",
        "",
        "",
        verdict("p50 ≤ 5 ms", worst(w1["p50_ms"], more_is_better=False) <= 5),
    )
    calls8 = ratio(w8["calls_per_s"], p8["calls_per_s"])
    row(
        "log_metric, 8 clients: calls/s",
        fig(w8["calls_per_s"]),
        fig(p8["calls_per_s"]),
        "",
        times(calls8),
        verdict("≥ 3× plain", calls8[1] >= 3),
    )
    row(
        "log_metric, 8 clients: p50 / p99 ms",
        f"{fig(w8['p50_ms'], 1)} / {fig(w8['p99_ms'], 1)}",
        f"{fig(p8['p50_ms'], 1)} / {fig(p8['p99_ms'], 1)}",
        "",
        "",
        "",
    )
    row(
        "log_metric, 8 clients: MLflow's client's own CPU per call, ms",
        fig(w8["client_cpu_ms"], 2),
        fig(p8["client_cpu_ms"], 2),
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
    batch = ratio(wb["metrics_per_s"], ev)
    row(
        "log_batch (1000/call), 8 clients: metrics/s",
        fig(wb["metrics_per_s"]),
        fig(pb["metrics_per_s"]),
        f"{fig(ev)} execute_values, {fig(cp)} COPY",
        percent(batch, "execute_values"),
        verdict("≥ 45 % of execute_values", batch[1] >= 0.45),
    )
    row(
        "log_batch, 8 clients: MLflow's client's own CPU per call, ms",
        fig(wb["client_cpu_ms"]),
        fig(pb["client_cpu_ms"]),
        "",
        "",
        "",
    )
    ws, ps = r["workbench.search_runs_ms"], r["plain.search_runs_ms"]
    search = ratio(ws, ps, more_is_better=False)
    row(
        f"search_runs, {r['workbench.search_runs_found']} of the runs (`metrics.rmse < 0.8`): p50 ms",
        fig(ws),
        fig(ps),
        "",
        times(search, 2),
        verdict("≤ 0.5× plain", search[1] <= 0.5),
    )
    wh, ph = r["workbench.search_runs_http_ms"], r["plain.search_runs_http_ms"]
    row(
        "search_runs: of which the server's answer (the same request as raw HTTP), ms",
        fig(wh),
        fig(ph),
        "",
        f"{times(ratio(wh, ph, more_is_better=False), 2)}; the client's own decoding "
        f"{fig(decoding(ws, wh))} / {fig(decoding(ps, ph))} ms",
        "",
    )
    row(
        "a run page's API calls: p50 ms",
        fig(r["workbench.run_page_ms"]),
        fig(r["plain.run_page_ms"]),
        "",
        "",
        "",
    )
    wa, pa, fa = r["workbench.artifacts"], r["plain.artifacts"], r["floor.ftp"]
    up, down = ratio(wa["up_mb_s"], fa["up_mb_s"]), ratio(wa["down_mb_s"], fa["down_mb_s"])
    row(
        "one big artifact: upload MB/s",
        fig(wa["up_mb_s"]),
        fig(pa["up_mb_s"]),
        f"{fig(fa['up_mb_s'])} ftplib",
        percent(up, "ftplib"),
        verdict("≥ 50 % of ftplib", up[1] >= 0.5),
    )
    row(
        "one big artifact: download MB/s",
        fig(wa["down_mb_s"]),
        fig(pa["down_mb_s"]),
        f"{fig(fa['down_mb_s'])} ftplib, {fig(r['floor.local_copy_mb_s'])} local copy",
        percent(down, "ftplib"),
        verdict("≥ 50 % of ftplib", down[1] >= 0.5),
    )
    up, down = ratio(wa["up_files_s"], pa["up_files_s"]), ratio(wa["down_files_s"], pa["down_files_s"])
    row(
        "small files (10 KB): upload files/s",
        fig(wa["up_files_s"]),
        fig(pa["up_files_s"]),
        f"{fig(fa['up_files_s'])} ftplib",
        times(up, suffix=" plain"),
        verdict("≥ 5× plain", up[1] >= 5),
    )
    row(
        "small files (10 KB): download files/s",
        fig(wa["down_files_s"]),
        fig(pa["down_files_s"]),
        f"{fig(fa['down_files_s'])} ftplib",
        times(down, suffix=" plain"),
        verdict("≥ 5× plain", down[1] >= 5),
    )
    row(
        "small files: MLflow's client's own CPU per file up / down, ms",
        f"{fig(wa['up_cpu_ms'], 2)} / {fig(wa['down_cpu_ms'], 2)}",
        f"{fig(pa['up_cpu_ms'], 2)} / {fig(pa['down_cpu_ms'], 2)}",
        "",
        "",
        "",
    )
    wm, pm = mib(read(folder, "mem_mlflow-server")), mib(read(folder, "mem_plain-mlflow"))
    if wm and pm:  # measured once, after the load
        row(
            "tracking server memory (MiB) / processes",
            f"{wm:,.0f} / {read(folder, 'procs_mlflow-server')}",
            f"{pm:,.0f} / {read(folder, 'procs_plain-mlflow')}",
            "",
            f"{wm / pm:.0%} of plain",
            verdict("≤ 30 % of plain", wm / pm <= 0.3),
        )
    startup = read(folder, "startup_ms")
    if startup:  # measured once
        seconds = int(startup) / 1000
        row(
            "`up` to all healthy, images built: s",
            fig(seconds, 1),
            "",
            "",
            "",
            verdict("≤ 30 s", seconds <= 30),
        )
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
        f"Machine: {os.cpu_count()} cores, {memory:.0f} GiB; {r['reps']} repetitions"
        f"{' (BENCH_SMALL: small counts)' if r.get('small') else ''}{load}.\n"
    )
    print(f"{HOW_TO_READ}\n")
    print("| figure | workbench | plain setup | floor | ratio | target |")
    print("|---|---|---|---|---|---|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    if serving:
        print_serving_tables(folder, serving, memory_of)


def print_serving_tables(folder: Path, serving: dict, memory_of: dict[str, str]) -> None:
    """The serving settings table, and the gateway's cost when it was measured."""
    served_env = (read(folder, "served_env") or "").split()
    if served_env:  # what serve.sh set, so the label follows its defaults
        front = "" if "DISABLE_NGINX=true" in served_env else "nginx + uvicorn, "
        SETTINGS["served"] = "`make serve` now: " + front + ", ".join(f"`{v}`" for v in served_env)
    print_serving_settings(serving, memory_of, read(folder, "serve_image_name") or "the model image")
    if all(name in serving for name in GATEWAY):
        workers = [v.split("=", 1)[1] for v in served_env if v.startswith("MLFLOW_MODELS_WORKERS=")]
        print_gateway_cost(serving, memory_of, workers[0] if workers else None)


def serving_only(folder: Path, stamp: str) -> None:
    """bench/serving.sh run alone (against a running stack, no tracking figures): its part of the
    table, its settings table and the gateway's cost. The load averages, when the caller wrote them
    (load_start, load_end: `uptime`), go in the header."""
    serving = json.loads((folder / "serving.json").read_text())
    memory_of = serving_memory(folder)
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    loads = [re.search(r"load average: (.*)", read(folder, f) or "") for f in ("load_start", "load_end")]
    load = (
        f"; load average (1, 5, 15 min) {loads[0].group(1)} at the start, {loads[1].group(1)} at the end"
        if all(loads)
        else ""
    )
    print(f"### Benchmark {stamp}: the serving part alone (bench/serving.sh)\n")
    print(
        f"Machine: {os.cpu_count()} cores, {memory:.0f} GiB; {serving['reps']} repetitions"
        f"{' (BENCH_SMALL: small counts)' if serving.get('small') else ''}{load}.\n"
    )
    print(f"{HOW_TO_READ}\n")
    print("| figure | workbench | plain setup | floor | ratio | target |")
    print("|---|---|---|---|---|---|")
    for cells in serving_rows(serving, memory_of):
        print("| " + " | ".join(cells) + " |")
    print_serving_tables(folder, serving, memory_of)


HOW_TO_READ = (
    "A figure is the median of its repetitions, their min–max in brackets (one value: they agree, "
    "or it was measured once: memory, start-up, sizes). A ratio is the ratio of the medians; "
    "**worst** is our worst repetition against the other side's best (the sides' repetitions are "
    "not paired, so this holds for any pairing). A target is **met** only when the worst "
    "repetition meets it (the worst-case ratio)."
)


def decoding(client_ms, http_ms) -> dict:
    """search_runs: MLflow's client's time minus the same request as raw HTTP, per repetition
    (both are timed in the same iteration, one after the other)."""
    values = [a - b for a, b in zip(spread(client_ms)["values"], spread(http_ms)["values"], strict=True)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


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
    latency = ratio(sv["1"]["p50_ms"], floor, more_is_better=False)
    throughput = ratio(sv["8"]["req_s"], pl["8"]["req_s"])
    rows = [
        (
            "serving one row, 1 client: p50 / p99 ms",
            ms(sv["1"]),
            ms(pl["1"]),
            f"{fig(serving['in_process']['pyfunc_predict_ms'], 2)} predict + {fig(bare['1']['p50_ms'], 2)} "
            f"bare HTTP = {fig(floor, 2)}",
            times(latency, suffix=" floor"),
            verdict("p50 ≤ 2× floor", latency[1] <= 2),
        ),
        (
            f"serving, {clients} clients: requests/s",
            fig(sv["8"]["req_s"]),
            fig(pl["8"]["req_s"]),
            f"{fig(bare['8']['req_s'])} bare HTTP (the client's ceiling)",
            times(throughput, suffix=" plain"),
            verdict("≥ 2× plain", throughput[1] >= 2),
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
    return f"{fig(figures['p50_ms'], 1)} / {fig(figures['p99_ms'], 1)}"


def serving_floor(serving: dict) -> dict:
    """The floor of one served request: in-process predict + a bare HTTP round trip (p50s). Its
    min is the sum of the two mins (and its max of the maxes): the two are measured apart, so
    the lowest floor any repetitions allow, which makes a ratio to it the strictest."""
    predict, http = spread(serving["in_process"]["pyfunc_predict_ms"]), spread(serving["bare"]["1"]["p50_ms"])
    return {key: predict[key] + http[key] for key in ("median", "min", "max")}


def serving_memory(folder: Path) -> dict[str, str]:
    out = {}
    for line in (read(folder, "serving_mem.tsv") or "").splitlines():
        name, memory, processes = line.split("\t")
        if mib(memory):
            out[name] = f"{mib(memory):,.0f} / {processes.strip()}"
    return out


def print_serving_settings(serving: dict, memory_of: dict[str, str], image: str) -> None:
    floor, plain = serving_floor(serving), serving["plain"]["8"]["req_s"]
    ip, clients = serving["in_process"], serving["clients"]
    sv8, bare = serving["served"]["8"], serving["bare"]
    # The client's ceiling, strictly: the bare server's worst repetition against any model
    # server's best.
    fastest = max(
        spread(serving[name]["8"]["req_s"])["max"] for name in SETTINGS if name in serving and name != "bare"
    )
    limit = (
        "over 3× any model server's rate in every repetition: it is not what limits the figures, though "
        "it takes its share of the same cores"
        if spread(bare["8"]["req_s"])["min"] >= 3 * fastest
        else "**not 3× the fastest model server's rate in every repetition: the client may be what limits "
        "the figures**"
    )
    print(f"\n#### Serving: the settings tried ({image}, all in this run)\n")
    print(
        f"- **Floor**: `model.predict` of the row, in-process, {fig(ip['pyfunc_predict_ms'], 2)} ms + a bare "
        f"HTTP round trip {fig(bare['1']['p50_ms'], 2)} ms = **{fig(floor, 2)} ms** (p50s; the floor's "
        "min and max are the sums of the two mins and of the two maxes)."
    )
    print(
        f"- **Where a request's time goes**, in-process, no HTTP (p50): the scikit-learn estimator's "
        f"`predict` {fig(ip.get('raw_predict_ms'), 2)} ms; `model.predict` (pyfunc: with the schema check) "
        f"{fig(ip['pyfunc_predict_ms'], 2)} ms; MLflow's request handler (`invocations`: JSON in, DataFrame, "
        f"predict, JSON out) {fig(ip.get('handler_ms'), 2)} ms; MLflow's whole scoring app (FastAPI, its "
        f"timeout middleware, the handler in a thread) called as an ASGI app {fig(ip.get('app_ms'), 2)} ms."
    )
    print(
        f"- **How**: one row of the model's input example per request; {serving['reps']} repetitions, each "
        "figure their median (min–max), the servers taken in turn, each: 1 client for "
        f"{serving['latency_requests']:,} requests or {serving['latency_seconds']:.0f} s, then {clients} "
        f"clients for {serving['requests']:,} requests or {serving['seconds']:.0f} s, whichever ends first; "
        "every server published on 127.0.0.1 as `make serve` publishes it (through docker-proxy). A verdict "
        "(yes/no) is the worst case: the server's worst repetition against the floor's lowest or the plain "
        "server's best."
    )
    print(
        f"- **Client**: {clients} processes, one keep-alive connection each (http.client), on the same "
        f"{serving['cpus']} cores as the servers. It spends {fig(sv8['client_cpu_ms'], 2)} ms of CPU per "
        f"request ({fig(sv8['client_cores'], 2)} of a core against `make serve` at {clients} clients) and "
        f"drives the bare HTTP server at {fig(bare['8']['req_s'])} requests/s: {limit}.\n"
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
        latency = ratio(r["1"]["p50_ms"], floor, more_is_better=False)
        throughput = ratio(r["8"]["req_s"], plain)
        if name in ("plain", "bare"):  # the references: no target of their own, the medians' ratios
            verdicts = times((latency[0], latency[0])), times((throughput[0], throughput[0]))
        else:
            verdicts = (
                f"{'yes' if latency[1] <= 2 else 'no'}: {times(latency)}",
                f"{'yes' if throughput[1] >= 2 else 'no'}: {times(throughput)}",
            )
        print(
            f"| {label} | {ms(r['1'])} | {fig(r['8']['req_s'])} | {ms(r['8'])} | {memory_of.get(name, '–')} | "
            f"{verdicts[0]} | {verdicts[1]} |"
        )


# The gateway's cost (bench/serving.sh): one model container with serve.sh's replica settings,
# reached directly and through gateways started as serve.sh starts one, side by side.
GATEWAY = {
    "direct": "the model container direct (published on 127.0.0.1, no gateway)",
    "gateway-nokeys": "through a gateway, keys off (`WORKBENCH_SERVING_KEYS=off`)",
    "gateway-keys": "through a gateway, keys on (the client sends `Authorization: Bearer <key>`)",
}
ADDED_MS, SHARE = 1.0, 0.9  # the targets: at most 1 ms added at p50, at least 90 % of the throughput


def added_ms(d: float) -> str:
    return f"{d:+.2f} ms"


def by_repetition(ours, theirs, how) -> list[float]:
    """`how(ours, theirs)` within each repetition: the gateway's cost's targets are measured back
    to back in each one (bench/serving.py, a group), so its i-th values pair."""
    return [how(o, t) for o, t in zip(spread(ours)["values"], spread(theirs)["values"], strict=True)]


def paired_verdict(target: str, values: list[float], meets, form: str, unit: str = "") -> str:
    """A gateway target's verdict, paired: met only when every repetition's gateway figure
    against the same repetition's direct one (`values`, from `by_repetition`) meets it; then the
    spread (min–max) of those paired values."""
    low, high = (form.format(x) for x in (min(values), max(values)))
    spread_ = f"{low}{unit}" if low == high else f"{low}–{high}{unit}"
    return f"{verdict(target, all(meets(v) for v in values))} (paired, by repetition {spread_})"


def gateway_rows(serving: dict, memory_of: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """The gateway's cost table: figure | direct | through the gateway | the gateway's cost | target."""
    direct, clients = serving["direct"], serving["clients"]
    rows = []
    for name, keys in (("gateway-nokeys", "keys off"), ("gateway-keys", "keys on")):
        gw, dr = serving[name]["1"]["p50_ms"], direct["1"]["p50_ms"]
        rows.append(
            (
                f"1 client: p50 / p99 ms, {keys}",
                ms(direct["1"]),
                ms(serving[name]["1"]),
                f"{added_ms(spread(gw)['median'] - spread(dr)['median'])} at p50",
                paired_verdict(
                    f"≤ {ADDED_MS:g} ms added at p50",
                    by_repetition(gw, dr, lambda g, d: g - d),
                    lambda d: d <= ADDED_MS,
                    "{:+.2f}",
                    " ms",
                ),
            )
        )
    for name, keys in (("gateway-nokeys", "keys off"), ("gateway-keys", "keys on")):
        gw, dr = serving[name]["8"]["req_s"], direct["8"]["req_s"]
        rows.append(
            (
                f"{clients} clients: requests/s, {keys}",
                fig(dr),
                fig(gw),
                f"{spread(gw)['median'] / spread(dr)['median']:.0%} of direct",
                paired_verdict(
                    f"≥ {SHARE:.0%} of direct",
                    by_repetition(gw, dr, lambda g, d: g / d),
                    lambda r: r >= SHARE,
                    "{:.0%}",
                ),
            )
        )
    for name, keys in (("gateway-nokeys", "keys off"), ("gateway-keys", "keys on")):
        rows.append(
            (f"{clients} clients: p50 / p99 ms, {keys}", ms(direct["8"]), ms(serving[name]["8"]), "", "")
        )
    if "direct" in memory_of and "gateway-keys" in memory_of:
        rows.append(
            (
                "memory (MiB) / processes: the model; the gateway",
                memory_of["direct"],
                memory_of["gateway-keys"],
                "",
                "",
            )
        )
    if "replicas-3" in serving:
        scale = ratio(serving["replicas-3"]["8"]["req_s"], serving["gateway-nokeys"]["8"]["req_s"])
        rows.append(
            (
                f"{clients} clients: requests/s through the gateway (keys off), 1 → 3 replicas",
                f"1 replica: {fig(serving['gateway-nokeys']['8']['req_s'])}",
                f"3 replicas: {fig(serving['replicas-3']['8']['req_s'])}",
                times(scale, 2, " with 3"),
                "",
            )
        )
    return rows


def bigger_machine(serving: dict, workers: str | None) -> str:
    """What the replicas row says, and what a bigger machine would show (expected, not measured)."""
    scale = ratio(serving["replicas-3"]["8"]["req_s"], serving["gateway-nokeys"]["8"]["req_s"])
    # Within a quarter of 1 replica's (either way): what the spread of one server's repetitions
    # reaches on these shared cores.
    if scale[0] < 1.25:
        found = (
            f"{times(scale, 2)}: the model's work already fills them with 1 replica, so 3 add availability, "
            "not throughput (what is left is noise and the cost of more processes on the same cores)"
        )
    else:
        found = f"{times(scale, 2)}: the cores were not full with 1 replica"
    return (
        f"**1 → 3 replicas**: on these {serving['cpus']} cores the 3 replicas ({workers or 'its'} uvicorn "
        f"workers and nginx each) share the cores with each other, the gateway and the {serving['clients']} "
        f"clients; {found}. **A bigger machine** (expected, not measured here): with a core for each worker "
        "of every replica, plus cores for the gateway and the clients, the replicas' work runs side by side "
        "and the throughput grows towards 3× that of 1 replica, until the gateway (HAProxy, a thread a core) "
        "or the clients become the limit; the gateway's own cost per request is the keys-off rows above."
    )


def print_gateway_cost(serving: dict, memory_of: dict[str, str], workers: str | None = None) -> None:
    print("\n#### Serving: the gateway's cost (the same model container, all in this run)\n")
    print(
        "- **How**: one container of the model's image with the settings `make serve` gives a replica "
        "(read from the served one), published on 127.0.0.1 and, on the stack's network, behind two "
        "gateways started as `make serve` starts one (`RATE_LIMIT` out of the bench's reach): "
        + "; ".join(f"{name}: {label}" for name, label in GATEWAY.items())
        + ". The three are measured back to back in each repetition, their order rotated. 3 replicas: "
        "that container and two more like it behind a third gateway (keys off). A cost is the difference "
        "of the medians (a share their ratio). **The verdict is paired**: each repetition's gateway figure "
        "against the same repetition's direct one (measured back to back), and a target is **met** only "
        "when every such pair meets it; next to it, the spread (min–max) of the paired differences "
        "(ratios) over the repetitions. The 1 → 3 replicas row (no target): the ratio of the medians, and as "
        "**worst** 3 replicas' worst repetition against 1 replica's best.\n"
    )
    print("| figure | direct | through the gateway | the gateway's cost | target |")
    print("|---|---|---|---|---|")
    for cells in gateway_rows(serving, memory_of):
        print("| " + " | ".join(cells) + " |")
    if "replicas-3" in serving:
        print(f"\n{bigger_machine(serving, workers)}")


if __name__ == "__main__":
    main()
