"""The workbench's benchmark: every figure side by side, in one run, with
  (a) the plain setup of the public tutorials (`plain-mlflow`: `mlflow server` defaults, the same
      Postgres, --default-artifact-root ftp://..., clients write to FTP directly), and
  (b) the floor: raw psycopg2 inserts, raw ftplib STOR/RETR, a local copy.
Each figure is measured BENCH_REPS times and kept whole: its median, min, max and every value
(bench/spread.py); bench/report.py judges the targets on the worst repetition. Loads are bounded in count and target only
the stack's own containers. Prints the figures as JSON on stdout; progress on stderr.

Runs inside the `bench` container (bench/compose.yml): `make bench`.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

SECRETS = Path("/run/secrets")
REPS = int(os.environ.get("BENCH_REPS", "3"))
SMALL = os.environ.get("BENCH_SMALL") == "1"  # a quick run for the test suite
os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
os.environ["MLFLOW_TRACKING_PASSWORD"] = (SECRETS / "mlflow-admin-password").read_text()
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
# No "🏃 View run ... at: <url>" line per run created: thousands of them buried the progress lines.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry  # noqa: E402
from mlflow.store.artifact.ftp_artifact_repo import FTPArtifactRepository  # noqa: E402

from spread import spread, spread_dict  # noqa: E402 (bench/spread.py, beside this file)

# The plain setup's clients are MLflow as the tutorials install it, with its own FTP repository.
# This image (mlflow-server's) also holds the workbench's FTP plugin, which takes ftp:// over in
# every process, this one included: give ftp:// back to MLflow's own repository here.
_artifact_repository_registry.register("ftp", FTPArtifactRepository)

SERVERS = {
    "workbench": "http://mlflow-server:5000",
    # The plain server's default Host-header protection admits private IPs, not names.
    "plain": f"http://{socket.gethostbyname('plain-mlflow')}:5000",
}


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def new_experiment(url: str, name: str) -> str:
    client = MlflowClient(url)
    name = f"bench-{name}-{time.time_ns()}"
    return client.create_experiment(name)


# ---- 1. tracking writes ----------------------------------------------------------------------


def _log_metric_worker(args):
    url, experiment_id, calls = args
    client = MlflowClient(url)
    run_id = client.create_run(experiment_id).info.run_id
    latencies = []
    cpu = time.process_time()
    for step in range(calls):
        start = time.perf_counter()
        client.log_metric(run_id, "m", float(step), step=step)
        latencies.append(time.perf_counter() - start)
    return latencies, time.process_time() - cpu


def log_metric(url: str, clients: int, calls: int) -> dict:
    experiment_id = new_experiment(url, "log-metric")
    with ProcessPoolExecutor(clients) as pool:
        pool.submit(_log_metric_worker, (url, experiment_id, 1)).result()  # warm the processes
        start = time.perf_counter()
        results = list(pool.map(_log_metric_worker, [(url, experiment_id, calls)] * clients))
        wall = time.perf_counter() - start
    latencies = [x for r, _ in results for x in r]
    # The client's own CPU time per call (MLflow's client, in these processes): on 2 cores it
    # takes its share from the servers' (bench/README.md).
    return {
        "calls_per_s": len(latencies) / wall,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "client_cpu_ms": sum(c for _, c in results) / len(latencies) * 1000,
    }


def _log_batch_worker(args):
    url, experiment_id, calls, size = args
    client = MlflowClient(url)
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    cpu = time.process_time()
    for call in range(calls):
        metrics = [Metric(f"m{i % 50}", float(i), now, call * size + i) for i in range(size)]
        client.log_batch(run_id, metrics=metrics)
    return calls * size, time.process_time() - cpu


def log_batch(url: str, clients: int, calls: int, size: int = 1000) -> dict:
    experiment_id = new_experiment(url, "log-batch")
    with ProcessPoolExecutor(clients) as pool:
        pool.submit(_log_batch_worker, (url, experiment_id, 1, 10)).result()
        start = time.perf_counter()
        results = list(pool.map(_log_batch_worker, [(url, experiment_id, calls, size)] * clients))
        wall = time.perf_counter() - start
    total = sum(n for n, _ in results)
    return {
        "metrics_per_s": total / wall,
        "client_cpu_ms": sum(c for _, c in results) / (total / size) * 1000,
    }


FLOOR_TABLE = "bench_floor_metrics"


@contextmanager
def _postgres():
    """A connection to MLflow's database that commits at the end and is closed after."""
    import psycopg2

    password = (SECRETS / "mlflow-db-password").read_text()
    conn = psycopg2.connect(host="postgres", dbname="mlflow", user="mlflow", password=password)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _raw_insert_worker(args):
    from psycopg2.extras import execute_values

    method, calls, size, run_uuid = args
    with _postgres() as conn:
        with conn.cursor() as cur:
            now = int(time.time() * 1000)
            start = time.perf_counter()
            for call in range(calls):
                rows = [(f"m{i % 50}", float(i), now, run_uuid, call * size + i, False) for i in range(size)]
                if method == "execute_values":
                    execute_values(
                        cur,
                        f"INSERT INTO {FLOOR_TABLE} (key, value, timestamp, run_uuid, "
                        "step, is_nan) VALUES %s",
                        rows,
                        page_size=size,
                    )
                else:
                    buffer = io.StringIO(
                        "".join(f"{k}\t{v}\t{t}\t{r}\t{s}\t{n}\n" for k, v, t, r, s, n in rows)
                    )
                    cur.copy_from(
                        buffer,
                        FLOOR_TABLE,
                        columns=("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
                    )
                conn.commit()
            return calls * size, time.perf_counter() - start


def raw_insert(method: str, clients: int, calls: int, size: int = 1000) -> float:
    # An identical table: the columns, primary key, indexes and the foreign key to `runs` of
    # MLflow's metrics (LIKE ... INCLUDING ALL copies all but the foreign key, which checks every
    # row: about half of an insert's cost). Like it an ordinary table, shared by all clients (a
    # TEMP one would skip the WAL). One real run per client, like the log_batch clients. Created
    # for this measurement and dropped after it.
    client = MlflowClient(SERVERS["workbench"])
    experiment_id = new_experiment(SERVERS["workbench"], "floor")
    run_uuids = [client.create_run(experiment_id).info.run_id for _ in range(clients)]
    with _postgres() as conn, conn.cursor() as cur:
        cur.execute(
            f"DROP TABLE IF EXISTS {FLOOR_TABLE}; CREATE TABLE {FLOOR_TABLE} (LIKE metrics INCLUDING ALL);"
            f"ALTER TABLE {FLOOR_TABLE} ADD FOREIGN KEY (run_uuid) REFERENCES runs (run_uuid)"
        )
    try:
        with ProcessPoolExecutor(clients) as pool:
            start = time.perf_counter()
            total = sum(
                n for n, _ in pool.map(_raw_insert_worker, [(method, calls, size, r) for r in run_uuids])
            )
            return total / (time.perf_counter() - start)
    finally:
        with _postgres() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE {FLOOR_TABLE}")


# ---- 2. tracking reads -----------------------------------------------------------------------


def _populate_worker(args):
    url, experiment_id, count, seed = args
    client = MlflowClient(url)
    now = int(time.time() * 1000)
    for i in range(count):
        run_id = client.create_run(experiment_id).info.run_id
        x = ((seed * 7919 + i * 104729) % 1000) / 1000  # deterministic spread over [0, 1)
        client.log_batch(
            run_id,
            params=[Param(f"p{j}", str(j * x)) for j in range(5)],
            metrics=[
                Metric(n, x + k / 10, now, 0) for k, n in enumerate(["rmse", "mae", "r2", "loss", "acc"])
            ],
        )
        client.set_terminated(run_id)
    return count


def populate(url: str, runs: int) -> str:
    experiment_id = new_experiment(url, "search")
    clients = 8
    with ProcessPoolExecutor(clients) as pool:
        list(pool.map(_populate_worker, [(url, experiment_id, runs // clients, s) for s in range(clients)]))
    return experiment_id


def search_runs(url: str, experiment_id: str) -> tuple[dict, int, dict]:
    """MLflow's client's search_runs; and the same request as raw HTTP (the server's answer and
    its transfer, without the client's decoding of 1,000 runs into entities)."""
    import requests

    client = MlflowClient(url)
    http = requests.Session()
    http.auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    body = {"experiment_ids": [experiment_id], "filter": "metrics.rmse < 0.8", "max_results": 1000}
    timings, raw, found = [], [], 0
    for _ in range(REPS + 1):
        start = time.perf_counter()
        page = client.search_runs([experiment_id], "metrics.rmse < 0.8", max_results=1000)
        timings.append(time.perf_counter() - start)
        found = len(page)
        start = time.perf_counter()
        http.post(f"{url}/api/2.0/mlflow/runs/search", json=body, timeout=300).raise_for_status()
        raw.append(time.perf_counter() - start)
    # The first of each is a warm-up, left out; the rest are the repetitions.
    return spread(t * 1000 for t in timings[1:]), found, spread(t * 1000 for t in raw[1:])


def run_page(url: str, experiment_id: str) -> dict:
    """The API calls the UI makes when a run page opens: the run, a metric history, artifacts."""
    client = MlflowClient(url)
    run_id = client.search_runs([experiment_id], max_results=1)[0].info.run_id
    timings = []
    for _ in range(REPS + 1):
        start = time.perf_counter()
        client.get_run(run_id)
        client.get_metric_history(run_id, "rmse")
        client.list_artifacts(run_id)
        timings.append(time.perf_counter() - start)
    return spread(t * 1000 for t in timings[1:])


# ---- 3. artifacts ----------------------------------------------------------------------------


def big_file(directory: Path, megabytes: int) -> Path:
    path = directory / "big.bin"
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(os.urandom(1 << 20))
    return path


def small_files(directory: Path, count: int) -> Path:
    folder = directory / "small"
    folder.mkdir()
    for i in range(count):
        (folder / f"f{i:04}.txt").write_bytes(os.urandom(10_000))
    return folder


def artifacts_mlflow(url: str, path: Path, folder: Path) -> dict:
    client = MlflowClient(url)
    experiment_id = new_experiment(url, "artifacts")
    size_mb = path.stat().st_size / 1e6
    count = len(list(folder.iterdir()))
    up, down, up_files, down_files, up_cpu, down_cpu = [], [], [], [], [], []
    for _ in range(REPS):
        run_id = client.create_run(experiment_id).info.run_id
        start = time.perf_counter()
        client.log_artifact(run_id, str(path))
        up.append(size_mb / (time.perf_counter() - start))
        with tempfile.TemporaryDirectory(dir="/tmp") as dst:
            start = time.perf_counter()
            client.download_artifacts(run_id, path.name, dst)
            down.append(size_mb / (time.perf_counter() - start))
        start, cpu = time.perf_counter(), time.process_time()
        client.log_artifacts(run_id, str(folder), "small")
        up_files.append(count / (time.perf_counter() - start))
        up_cpu.append((time.process_time() - cpu) / count * 1000)
        with tempfile.TemporaryDirectory(dir="/tmp") as dst:
            start, cpu = time.perf_counter(), time.process_time()
            client.download_artifacts(run_id, "small", dst)
            down_files.append(count / (time.perf_counter() - start))
            down_cpu.append((time.process_time() - cpu) / count * 1000)
    # up_cpu_ms/down_cpu_ms: MLflow's client's own CPU per small file (its threads included).
    return {
        "up_mb_s": spread(up),
        "down_mb_s": spread(down),
        "up_files_s": spread(up_files),
        "down_files_s": spread(down_files),
        "up_cpu_ms": spread(up_cpu),
        "down_cpu_ms": spread(down_cpu),
    }


def artifacts_raw_ftp(path: Path, folder: Path) -> dict:
    password = (SECRETS / "ftpd-password").read_text()
    size_mb = path.stat().st_size / 1e6
    up, down, up_files, down_files = [], [], [], []
    files = sorted(folder.iterdir())
    with ftplib.FTP() as ftp:
        ftp.connect("ftpd", 21, timeout=60)
        ftp.login("mlflow", password)
        try:
            ftp.mkd("bench-floor")
        except ftplib.error_perm:
            pass
        ftp.cwd("bench-floor")
        for _ in range(REPS):
            start = time.perf_counter()
            with open(path, "rb") as f:
                ftp.storbinary("STOR big.bin", f, blocksize=1 << 20)
            up.append(size_mb / (time.perf_counter() - start))
            start = time.perf_counter()
            with open("/tmp/floor-down.bin", "wb") as f:
                ftp.retrbinary("RETR big.bin", f.write, blocksize=1 << 20)
            down.append(size_mb / (time.perf_counter() - start))
            start = time.perf_counter()
            for file in files:
                with open(file, "rb") as f:
                    ftp.storbinary(f"STOR {file.name}", f)
            up_files.append(len(files) / (time.perf_counter() - start))
            start = time.perf_counter()
            for file in files:
                ftp.retrbinary(f"RETR {file.name}", lambda _: None)
            down_files.append(len(files) / (time.perf_counter() - start))
        for name in ftp.nlst():
            ftp.delete(name)
        ftp.cwd("..")
        ftp.rmd("bench-floor")
    os.remove("/tmp/floor-down.bin")
    return {
        "up_mb_s": spread(up),
        "down_mb_s": spread(down),
        "up_files_s": spread(up_files),
        "down_files_s": spread(down_files),
    }


def local_copy(path: Path) -> dict:
    size_mb = path.stat().st_size / 1e6
    timings = []
    for _ in range(REPS):
        start = time.perf_counter()
        shutil.copyfile(path, "/tmp/copy.bin")
        timings.append(size_mb / (time.perf_counter() - start))
        os.remove("/tmp/copy.bin")
    return spread(timings)


# ---- the run -----------------------------------------------------------------------------------


def repeat(fn, *args) -> dict:
    return spread(fn(*args) for _ in range(REPS))


def repeat_dict(fn, *args) -> dict:
    return spread_dict([fn(*args) for _ in range(REPS)])


def main() -> None:
    calls = 20 if SMALL else 100
    runs = 80 if SMALL else 2000
    megabytes = 8 if SMALL else 200
    count = 50 if SMALL else 500
    out: dict = {"reps": REPS, "small": SMALL}
    for name, url in SERVERS.items():
        progress(f"{name}: log_metric, 1 client")
        out[f"{name}.log_metric.1"] = repeat_dict(log_metric, url, 1, calls)
        progress(f"{name}: log_metric, 8 clients")
        out[f"{name}.log_metric.8"] = repeat_dict(log_metric, url, 8, calls // 2)
        progress(f"{name}: log_batch (1000 metrics a call), 8 clients")
        out[f"{name}.log_batch.8"] = repeat_dict(log_batch, url, 8, 2 if SMALL else 5)
    for method in ("execute_values", "copy"):
        progress(f"floor: raw psycopg2 {method}, 8 clients")
        out[f"floor.{method}.8"] = repeat(raw_insert, method, 8, 2 if SMALL else 5)
    for name, url in SERVERS.items():
        progress(f"{name}: creating {runs} runs (5 params, 5 metrics each)")
        experiment_id = populate(url, runs)
        progress(f"{name}: search_runs")
        (
            out[f"{name}.search_runs_ms"],
            out[f"{name}.search_runs_found"],
            out[f"{name}.search_runs_http_ms"],
        ) = search_runs(url, experiment_id)
        out[f"{name}.run_page_ms"] = run_page(url, experiment_id)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path, folder = big_file(Path(tmp), megabytes), small_files(Path(tmp), count)
        for name, url in SERVERS.items():
            progress(f"{name}: artifacts, {megabytes} MB and {count} x 10 KB")
            out[f"{name}.artifacts"] = artifacts_mlflow(url, path, folder)
        progress("floor: raw ftplib")
        out["floor.ftp"] = artifacts_raw_ftp(path, folder)
        out["floor.local_copy_mb_s"] = local_copy(path)
    return out


if __name__ == "__main__":
    # Whatever MLflow still prints goes to stderr: stdout carries the JSON result only.
    sys.stdout = sys.stderr
    result = main()
    print(json.dumps(result), file=sys.__stdout__)
