"""Renders one benchmark run (bench/run.sh's work folder) as the Markdown table of the README:
every figure side by side with the plain setup and the floor, the ratio, and the target."""

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
    row("log_metric, 1 client: calls/s", f(w1["calls_per_s"]), f(p1["calls_per_s"]), "", f"{w1['calls_per_s'] / p1['calls_per_s']:.1f}×", "")
    row("log_metric, 1 client: p50 / p99 ms", f"{w1['p50_ms']:.1f} / {w1['p99_ms']:.1f}", f"{p1['p50_ms']:.1f} / {p1['p99_ms']:.1f}", "", "", "p50 ≤ 5 ms")
    row("log_metric, 8 clients: calls/s", f(w8["calls_per_s"]), f(p8["calls_per_s"]), "", f"{w8['calls_per_s'] / p8['calls_per_s']:.1f}×", "≥ 3× plain")
    row("log_metric, 8 clients: p50 / p99 ms", f"{w8['p50_ms']:.1f} / {w8['p99_ms']:.1f}", f"{p8['p50_ms']:.1f} / {p8['p99_ms']:.1f}", "", "", "")
    wb, pb, ev, cp = r["workbench.log_batch.8"], r["plain.log_batch.8"], r["floor.execute_values.8"], r["floor.copy.8"]
    row("log_batch (1000/call), 8 clients: metrics/s", f(wb), f(pb), f"{f(ev)} execute_values, {f(cp)} COPY",
        f"{wb / ev:.0%} of execute_values", "≥ 45 % of execute_values")
    ws, ps = r["workbench.search_runs_ms"], r["plain.search_runs_ms"]
    row(f"search_runs, {r['workbench.search_runs_found']} of the runs (`metrics.rmse < 0.8`): p50 ms", f(ws), f(ps), "", f"{ws / ps:.2f}×", "≤ 0.5× plain")
    row("a run page's API calls: p50 ms", f(r["workbench.run_page_ms"]), f(r["plain.run_page_ms"]), "", "", "")
    wa, pa, fa = r["workbench.artifacts"], r["plain.artifacts"], r["floor.ftp"]
    row("one big artifact: upload MB/s", f(wa["up_mb_s"]), f(pa["up_mb_s"]), f"{f(fa['up_mb_s'])} ftplib",
        f"{wa['up_mb_s'] / fa['up_mb_s']:.0%} of ftplib", "≥ 50 % of ftplib")
    row("one big artifact: download MB/s", f(wa["down_mb_s"]), f(pa["down_mb_s"]), f"{f(fa['down_mb_s'])} ftplib, {f(r['floor.local_copy_mb_s'])} local copy",
        f"{wa['down_mb_s'] / fa['down_mb_s']:.0%} of ftplib", "≥ 50 % of ftplib")
    row("small files (10 KB): upload files/s", f(wa["up_files_s"]), f(pa["up_files_s"]), f"{f(fa['up_files_s'])} ftplib",
        f"{wa['up_files_s'] / pa['up_files_s']:.1f}× plain", "≥ 5× plain")
    row("small files (10 KB): download files/s", f(wa["down_files_s"]), f(pa["down_files_s"]), f"{f(fa['down_files_s'])} ftplib",
        f"{wa['down_files_s'] / pa['down_files_s']:.1f}× plain", "≥ 5× plain")
    wm, pm = mib(read(folder, "mem_mlflow-server")), mib(read(folder, "mem_plain-mlflow"))
    if wm and pm:
        row("tracking server memory (MiB) / processes", f"{wm:,.0f} / {read(folder, 'procs_mlflow-server')}",
            f"{pm:,.0f} / {read(folder, 'procs_plain-mlflow')}", "", f"{wm / pm:.0%} of plain", "≤ 30 % of plain")
    startup = read(folder, "startup_ms")
    if startup:
        row("`up` to all healthy, images built: s", f(int(startup) / 1000, 1), "", "", "", "≤ 30 s")
    if images:
        sizes = ", ".join(f"{k.split('/')[-1]} {v / 1e6:,.0f}" for k, v in images["images"].items())
        total = images.get("unique_total") or images["sum"]
        row("image sizes, MB (shared layers once)", f"{total / 1e6:,.0f} in all", "", "", sizes, "")

    print(f"### Benchmark {stamp}\n")
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    print(f"Machine: {os.cpu_count()} cores, {memory:.0f} GiB; median of {r['reps']} repetitions"
          f"{' (BENCH_SMALL: small counts)' if r.get('small') else ''}.\n")
    print("| figure | workbench | plain setup | floor | ratio | target |")
    print("|---|---|---|---|---|---|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
