"""The serving benchmark's two programs, run inside the served model's own image (so every
library is the one the served model uses; bench/serving.sh starts them):

    python /bench/serving.py bare PORT
        the floor's server: a raw ASGI app on uvicorn (the scoring server's own HTTP stack, one
        worker, no framework) that reads the request and answers a fixed JSON body;

    python /bench/serving.py measure TARGETS_JSON
        the client and the in-process floor. TARGETS_JSON: {"name": "http://127.0.0.1:port", ...};
        a target may instead be {"url": ..., "key": ..., "group": ...}: "key" is sent as
        `Authorization: Bearer <key>` (a gateway with API keys on), and the targets of one "group"
        are measured back to back in each repetition (the gateway's cost: the model direct and
        through its gateways, minutes apart at most). For each repetition (BENCH_REPS) and each
        target in turn: the latency of one-row requests from 1 client, then the throughput of 8
        concurrent clients. Then `model.predict` of the same row in this process. Prints JSON on stdout: every figure over the repetitions, its
        median, min, max and values (bench/spread.py).

The request is one row of the model's own input example (/opt/ml/model/serving_input_example.json,
`dataframe_split`). The client: 8 processes (8 independent users, no GIL shared between them),
each with one persistent HTTP/1.1 connection (http.client), on the same cores as the servers.
Every load is bounded: a number of requests and a number of seconds, whichever comes first
(1 client: 1,000 requests or 10 s; 8 clients: 2,000 requests or 20 s; BENCH_SMALL: 200 or 5 s).
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import statistics
import sys
import time
import urllib.parse

from spread import spread_dict  # bench/spread.py, beside this file (mounted at /bench)

MODEL_PATH = "/opt/ml/model"
REPS = int(os.environ.get("BENCH_REPS", "3"))
SMALL = os.environ.get("BENCH_SMALL") == "1"
REQUESTS = 200 if SMALL else 2000  # per 8-client run (and per in-process figure) ...
SECONDS = 5.0 if SMALL else 20.0  # ... or this long, whichever ends first
LATENCY_REQUESTS = 200 if SMALL else 1000  # per 1-client run ...
LATENCY_SECONDS = 5.0 if SMALL else 10.0  # ... or this long
WARMUP = 20 if SMALL else 50  # requests per connection before timing
CLIENTS = 8


def progress(message: str) -> None:
    print(f"[serving] {message}", file=sys.stderr, flush=True)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one_row() -> bytes:
    """The first row of the model's input example, as a `dataframe_split` request body."""
    with open(os.path.join(MODEL_PATH, "serving_input_example.json")) as f:
        example = json.load(f)
    if "dataframe_split" not in example:
        raise SystemExit("the bench needs a model logged with a tabular input_example (dataframe_split)")
    split = example["dataframe_split"]
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"][:1]}}).encode()


# ---- the bare HTTP server (the floor's round trip) ------------------------------------------------

BARE_BODY = b'{"predictions": [0.0]}'


async def bare_app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole request body, as the scoring server does
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BARE_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BARE_BODY})


def bare(port: str) -> None:
    import uvicorn

    uvicorn.run(bare_app, host="0.0.0.0", port=int(port), workers=1, access_log=False, log_level="warning")


# ---- the client ----------------------------------------------------------------------------------


class Connection:
    """One persistent HTTP/1.1 connection that POSTs the same body to /invocations."""

    def __init__(self, target: dict, body: bytes):
        parsed = urllib.parse.urlsplit(target["url"])
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.body = body
        self.headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        if target.get("key"):
            self.headers["Authorization"] = f"Bearer {target['key']}"

    def request(self) -> float:
        start = time.perf_counter()
        self.conn.request("POST", "/invocations", self.body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
        return elapsed

    def close(self) -> None:
        self.conn.close()


def _client(target: dict, body: bytes, count: int, barrier, deadline_s: float, results) -> None:
    """One of the concurrent clients: warm up, wait for the others, then `count` requests or
    until the deadline. Puts (latencies, start, end, CPU seconds, error) on `results`."""
    conn = Connection(target, body)
    try:
        for _ in range(WARMUP):
            conn.request()
        barrier.wait(timeout=120)
        cpu, start = time.process_time(), time.perf_counter()
        deadline = start + deadline_s
        latencies = []
        while len(latencies) < count and time.perf_counter() < deadline:
            latencies.append(conn.request())
        results.put((latencies, start, time.perf_counter(), time.process_time() - cpu, None))
    except Exception as e:  # noqa: BLE001 (reported by the parent, whatever it is)
        try:
            barrier.abort()
        except Exception:  # noqa: BLE001 (already broken: nothing more to do)
            pass
        results.put(([], 0.0, 0.0, 0.0, repr(e)))
    finally:
        conn.close()


def concurrent(target: dict, body: bytes, clients: int = CLIENTS) -> dict:
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(clients), ctx.Queue()
    share = REQUESTS // clients
    procs = [
        ctx.Process(target=_client, args=(target, body, share, barrier, SECONDS, results))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=SECONDS + 300) for _ in procs]
    for p in procs:
        p.join()
    # The client that failed first aborts the barrier: the others' BrokenBarrierError says less.
    errors = sorted((e for *_, e in outcomes if e), key=lambda e: e.startswith("BrokenBarrierError"))
    if errors:
        raise RuntimeError(f"{target['url']}: {errors[0]}")
    latencies = [x for lat, *_ in outcomes for x in lat]
    # Wall time: from the first client's start to the last one's end (all start at the barrier).
    wall = max(o[2] for o in outcomes) - min(o[1] for o in outcomes)
    cpu = sum(o[3] for o in outcomes)
    return {
        "req_s": len(latencies) / wall,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "requests": len(latencies),
        # the client's own CPU: per request, and in cores used during the run
        "client_cpu_ms": cpu / len(latencies) * 1000,
        "client_cores": cpu / wall,
    }


def sequential(target: dict, body: bytes) -> dict:
    conn = Connection(target, body)
    try:
        for _ in range(WARMUP):
            conn.request()
        latencies, deadline = [], time.perf_counter() + LATENCY_SECONDS
        while len(latencies) < LATENCY_REQUESTS and time.perf_counter() < deadline:
            latencies.append(conn.request())
    finally:
        conn.close()
    return {
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "requests": len(latencies),
    }


# ---- the in-process floor ------------------------------------------------------------------------


def timed(fn, count: int, seconds: float) -> list[float]:
    for _ in range(min(count, 50)):
        fn()
    timings, deadline = [], time.perf_counter() + seconds
    while len(timings) < count and time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return timings


def asgi_app_timings(app, body: bytes, count: int, seconds: float) -> list[float]:
    """MLflow's scoring app (FastAPI) called as an ASGI app, in-process: everything the server
    does for a request but the HTTP parsing and the network."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }

    async def call() -> None:
        messages, status = [{"type": "http.request", "body": body, "more_body": False}], []

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # no disconnect while the app works

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"the scoring app answered {status}")

    async def run() -> list[float]:
        for _ in range(min(count, 50)):
            await call()
        timings, deadline = [], time.perf_counter() + seconds
        while len(timings) < count and time.perf_counter() < deadline:
            start = time.perf_counter()
            await call()
            timings.append(time.perf_counter() - start)
        return timings

    return asyncio.run(run())


def in_process(body: bytes) -> dict:
    """`model.predict` of the one row, in this process: the pyfunc model (what the server calls,
    with its input-schema check), and the scikit-learn estimator under it. And, to show where a
    request's time goes: the scoring server's request handler (`invocations`: parse the JSON,
    build the DataFrame, check the schema, predict, serialize) called directly, and the whole
    scoring app (FastAPI, its middleware, the handler in a thread) called as an ASGI app."""
    import pandas as pd
    from mlflow.pyfunc import load_model, scoring_server

    os.environ[scoring_server._SERVER_MODEL_PATH] = MODEL_PATH
    from mlflow.pyfunc.scoring_server.app import app  # loads the model too; marks this process
    # as a serving environment (as in the server) before the timings below

    model = load_model(MODEL_PATH)
    schema = model.metadata.get_input_schema()
    split = json.loads(body)["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    result = scoring_server.invocations(body, "application/json", model, schema)
    if result.status != 200:
        raise RuntimeError(f"the handler refused the bench's request: {result.response[:300]}")
    out = {}
    for name, fn in {
        "pyfunc_predict": lambda: model.predict(frame),
        "raw_predict": lambda: model.get_raw_model().predict(frame),
        "handler": lambda: scoring_server.invocations(body, "application/json", model, schema),
    }.items():
        try:
            out[f"{name}_ms"] = statistics.median(timed(fn, REQUESTS, SECONDS)) * 1000
        except Exception as e:  # noqa: BLE001 (e.g. a flavor without get_raw_model: reported)
            progress(f"in-process {name}: {e!r}")
    out["app_ms"] = statistics.median(asgi_app_timings(app, body, REQUESTS, SECONDS)) * 1000
    return out


# ---- the run -------------------------------------------------------------------------------------


def rotated(items: list, rep: int) -> list:
    return items[rep % len(items) :] + items[: rep % len(items)] if items else items


def order(targets: dict[str, dict], rep: int) -> list[str]:
    """The targets of one repetition in turn. The order rotates each repetition, so no target is
    always first (or last) after a pause; a group's targets stay together, their own order rotated."""
    units: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    for name, target in targets.items():
        group = target.get("group")
        if group is None:
            units.append([name])
        elif group not in groups:
            groups[group] = [name]
            units.append(groups[group])
        else:
            groups[group].append(name)
    return [name for unit in rotated(units, rep) for name in rotated(unit, rep)]


def measure(targets_json: str) -> dict:
    targets = {
        name: {"url": target} if isinstance(target, str) else target
        for name, target in json.loads(targets_json).items()
    }
    body = one_row()
    runs: dict[str, dict[str, list]] = {name: {"1": [], "8": []} for name in targets}
    for rep in range(REPS):
        for name in order(targets, rep):
            progress(f"repetition {rep + 1}/{REPS}: {name}, 1 client then {CLIENTS} clients")
            runs[name]["1"].append(sequential(targets[name], body))
            runs[name]["8"].append(concurrent(targets[name], body))
    out: dict = {
        "reps": REPS,
        "small": SMALL,
        "requests": REQUESTS,
        "seconds": SECONDS,
        "latency_requests": LATENCY_REQUESTS,
        "latency_seconds": LATENCY_SECONDS,
        "clients": CLIENTS,
        "body_bytes": len(body),
        "cpus": os.cpu_count(),
    }
    for name, r in runs.items():
        out[name] = {"1": spread_dict(r["1"]), "8": spread_dict(r["8"])}
    progress("in-process: model.predict of the same row")
    in_proc = [in_process(body) for _ in range(REPS)]
    out["in_process"] = spread_dict(in_proc)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["bare"]:
        bare(sys.argv[2])
    elif sys.argv[1:2] == ["measure"]:
        result = measure(sys.argv[2])
        print(json.dumps(result))
    else:
        raise SystemExit(__doc__)
