"""The workbench's audit trail: every mutating call to the tracking server and registry, recorded.

AuditTrail is the outermost ASGI app of the server (create_app in workbench_server_app.py puts it
in front of the request guard, fast paths on or off), so it sees every request, those the guard or
MLflow refuse too. For each POST, PUT, PATCH and DELETE under /api/ and /ajax-api/ (and the UI's
/graphql mutations aside, which MLflow's GraphQL schema does not have), except the searches that
POST only to read, it records:

    at (UTC), username (from the basic-auth header; who MLflow authenticated unless the outcome
    is 401), method, route (the path as sent), status (MLflow's or the guard's answer), targets
    (the ids the call names: run_id, experiment_id, name, version, alias, username, model_id,
    trace_id, ... from the query and the start of a JSON body)

in Postgres (table workbench_audit of MLflow's database, created by mlflow-migrate: kept across
restarts and in `make backup`'s dump), and counts workbench_audit_calls_total{user, action,
outcome} at /metrics (user "-" for a refused call: its header may name anybody). Reads are not
recorded.

Rows are written by one background thread per worker, in batches every AUDIT_FLUSH_SECONDS, so a
call's latency does not include the insert; a worker killed outright loses at most that much of
the trail (a clean stop flushes). A failed write is logged and counted
(workbench_audit_write_failures_total), never answered to the client.

Admins read the trail with `make audit` (filters: mlflow-server/README.md, "Audit trail") or
GET /api/2.0/workbench/audit; anybody else gets 403.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import json
import logging
import os
import queue
import re
import threading
import time
import urllib.parse
from datetime import UTC, datetime

_logger = logging.getLogger(__name__)

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
API = re.compile(r"^/(?:api|ajax-api)/[0-9.]+/")
# POSTs that only read (searches, batch gets, the GraphQL queries of the UI): not recorded.
READS = re.compile(
    r"(?:/search|/search-datasets|/search-traces|/batch-get|/batchGet|/get-history-bulk-interval"
    r"|/traces/get|/calculate|/query)$"
)
# The ids a call names, as MLflow's JSON calls spell them. Read from the first BODY_PEEK bytes of a
# JSON body (MLflow's client writes the ids first: protobuf field order) and from the query.
TARGET_KEYS = (
    "run_id",
    "run_uuid",
    "experiment_id",
    "name",
    "version",
    "alias",
    "stage",
    "username",
    "permission",
    "resource_type",
    "resource_id",
    "model_id",
    "trace_id",
    "request_id",
    "new_name",
    "is_admin",
)
TARGET = re.compile(
    rb'"('
    + b"|".join(k.encode() for k in TARGET_KEYS)
    + rb')"\s*:\s*("(?:[^"\\]|\\.){0,256}"|-?\d{1,20}|true|false)'
)
BODY_PEEK = 8192
AUDIT_FLUSH_SECONDS = float(os.environ.get("WORKBENCH_AUDIT_FLUSH_SECONDS", "0.25"))
AUDIT_ROUTES = ("/api/2.0/workbench/audit", "/ajax-api/2.0/workbench/audit")
NOT_AUTHENTICATED = "-"

_INSERT = (
    "INSERT INTO workbench_audit (at, username, method, route, status, targets) "
    "VALUES (%(at)s, %(username)s, %(method)s, %(route)s, %(status)s, %(targets)s)"
)


def recorded(method: str, path: str) -> bool:
    return method in MUTATING and bool(API.match(path)) and not READS.search(path)


def action_of(path: str) -> str:
    """The call's name for the counter: the route without its version prefix and, for artifact
    transfers, without the artifact's path (bounded label values)."""
    route = API.sub("", path).removeprefix("mlflow/")
    if route.startswith("mlflow-artifacts/artifacts"):
        return "mlflow-artifacts/artifacts"
    return route[:80]


def username_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, encoded = value.partition(b" ")
            if scheme.lower() != b"basic":
                return None
            try:
                return (
                    base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")[0][:256]
                )
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def targets_of(query_string: bytes, body: bytes) -> dict[str, str]:
    targets: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query_string.decode("latin-1")):
        if key in TARGET_KEYS and key not in targets:
            targets[key] = value[:256]
    for match in TARGET.finditer(body):
        key = match.group(1).decode()
        if key not in targets:
            raw = match.group(2)
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            targets[key] = str(value)
    return targets


class _Writer:
    """One background thread per worker: batches of rows into workbench_audit."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._engine = None
        self._thread = threading.Thread(target=self._run, name="workbench-audit", daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self._failures = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import Counter

            self._failures = Counter(
                "workbench_audit_write_failures", "Audit trail rows that could not be written", []
            )

    def put(self, row: dict) -> None:
        if not self._started:
            with self._lock:
                if not self._started:
                    self._thread.start()
                    atexit.register(self.flush)
                    self._started = True
        self._queue.put(row)

    def _run(self) -> None:
        while True:
            time.sleep(AUDIT_FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        rows = []
        while True:
            try:
                rows.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not rows:
            return
        try:
            connection = self._get_engine().raw_connection()
            try:
                with connection.cursor() as cursor:
                    cursor.executemany(_INSERT, rows)
                connection.commit()
            finally:
                connection.close()
        except Exception:  # a lost audit row is logged and counted, never a client's error
            _logger.exception("workbench audit: %d record(s) could not be written", len(rows))
            if self._failures is not None:
                self._failures.inc(len(rows))

    def _get_engine(self):
        if self._engine is None:
            import sqlalchemy

            self._engine = sqlalchemy.create_engine(
                os.environ["MLFLOW_BACKEND_STORE_URI"], pool_size=1, max_overflow=0, pool_pre_ping=True
            )
        return self._engine


class AuditTrail:
    """ASGI app in front of everything: records the mutating calls, answers GET
    /api/2.0/workbench/audit for admins, hands every request on unchanged."""

    def __init__(self, app):
        self.app = app
        self._writer = _Writer()
        self._calls = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import Counter

            self._calls = Counter(
                "workbench_audit_calls",
                "Mutating calls to the tracking server and registry, by user, action and outcome",
                ["user", "action", "outcome"],
            )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if not recorded(method, path):
            return await self.app(scope, receive, send)

        headers = scope.get("headers", [])
        body, receive = await _peek_json_body(headers, receive)
        status = 500  # if the app never answers (it raised)

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._record(scope, method, path, headers, body, status)

    def _record(self, scope, method, path, headers, body, status) -> None:
        username = username_of(headers)
        try:
            targets = targets_of(scope.get("query_string", b""), body)
        except Exception:  # noqa: BLE001 (ids are best effort: the call is recorded anyway)
            targets = {}
        self._writer.put(
            {
                "at": datetime.now(UTC),
                "username": username,
                "method": method,
                "route": path[:1024],
                "status": status,
                "targets": json.dumps(targets),
            }
        )
        if self._calls is not None:
            # A user label only for a call that succeeded (MLflow authenticated that user): a refused
            # call's header may name anybody, and each new name would be a new series.
            user = username if username and status < 400 else NOT_AUTHENTICATED
            outcome = "ok" if status < 400 else "refused" if status < 500 else "error"
            self._calls.labels(user=user, action=action_of(path), outcome=outcome).inc()


async def _peek_json_body(headers, receive):
    """The first BODY_PEEK bytes of a JSON body (what was read is replayed to the app), or b""."""
    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
    if b"json" not in content_type.lower():
        return b"", receive
    chunks, size, more = [], 0, True
    while more and size < BODY_PEEK:
        message = await receive()
        if message["type"] != "http.request":
            chunks.append(message)
            break
        chunks.append(message)
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")[:BODY_PEEK]
    pending = list(chunks)

    async def replay():
        if pending:
            return pending.pop(0)
        return await receive()

    return body, replay


# ---- reading the trail -----------------------------------------------------------------------

FILTERS = {
    "user": "username = %(user)s",
    "since": "at >= %(since)s",
    "until": "at < %(until)s",
    "action": "route LIKE %(action)s",
    "status": "status = %(status)s",
    "target": "targets::text LIKE %(target)s",
}
MAX_ROWS = 10000


def query(params: dict[str, str]) -> tuple[str, dict]:
    """The SELECT for the given filters (user, since, until, action, status, target, limit)."""
    where, values = [], {}
    for name, condition in FILTERS.items():
        value = params.get(name)
        if value:
            where.append(condition)
            if name in ("action", "target"):
                value = f"%{value}%"
            elif name == "status":
                value = int(value)
            values[name] = value
    limit = min(int(params.get("limit") or 1000), MAX_ROWS)
    sql = (
        "SELECT id, at, username, method, route, status, targets FROM workbench_audit"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY at DESC, id DESC LIMIT {limit}"
    )
    return sql, values


async def audit_records(request):
    """GET /api/2.0/workbench/audit: the trail, newest first, for MLflow admins only. A route of
    MLflow's FastAPI app (create_app adds it), so MLflow's host, CORS and security-header
    middlewares run around it; it authenticates itself (MLflow's permission middleware lets a
    route without a validator through)."""
    import anyio
    from starlette.responses import JSONResponse

    try:
        from mlflow.server.auth import _authenticate_fastapi_request

        user = await anyio.to_thread.run_sync(_authenticate_fastapi_request, request)
    except Exception:
        _logger.exception("workbench audit: cannot authenticate with this MLflow")
        return JSONResponse(
            {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "audit: no authentication"}, 503
        )
    if user is None:
        return JSONResponse(
            {"error_code": "UNAUTHENTICATED", "message": "You are not authenticated."},
            401,
            headers={"WWW-Authenticate": 'Basic realm="mlflow"'},
        )
    if not user.is_admin:
        return JSONResponse(
            {"error_code": "PERMISSION_DENIED", "message": "Only admins read the audit trail."}, 403
        )
    try:
        sql, values = query(dict(request.query_params))
    except ValueError as exc:
        return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}, 400)
    return JSONResponse({"records": await anyio.to_thread.run_sync(_select, sql, values)})


def add_audit_route(app) -> None:
    from starlette.routing import Route

    for path in AUDIT_ROUTES:  # ahead of MLflow's routes (its Flask mount takes every path)
        app.router.routes.insert(0, Route(path, audit_records, methods=["GET"]))


def _select(sql: str, values: dict) -> list[dict]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        os.environ["MLFLOW_BACKEND_STORE_URI"], poolclass=sqlalchemy.pool.NullPool
    )
    try:
        connection = engine.raw_connection()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, values)
                columns = [c[0] for c in cursor.description]
                rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()
    finally:
        engine.dispose()
    for row in rows:
        row["at"] = row["at"].isoformat()
    return rows


# ---- make audit --------------------------------------------------------------------------------


def main() -> None:
    """`make audit`: the trail as a table, newest first, filtered by the environment (WHO, SINCE,
    UNTIL, ACTION, STATUS, TARGET, LIMIT), in a one-shot container of the mlflow-server image."""
    import sys

    names = {
        "user": "WHO",
        "since": "SINCE",
        "until": "UNTIL",
        "action": "ACTION",
        "status": "STATUS",
        "target": "TARGET",
        "limit": "LIMIT",
    }
    params = {name: os.environ.get(variable, "") for name, variable in names.items()}
    try:
        sql, values = query(params)
    except ValueError as exc:
        sys.exit(f"audit: {exc}")
    rows = _select(sql, values)
    print(f"{'at (UTC)':<26} {'user':<16} {'status':>6} {'method':<6} route  targets")
    for row in reversed(rows):
        print(
            f"{row['at'][:26]:<26} {row['username'] or '-':<16} {row['status']:>6} {row['method']:<6} "
            f"{row['route']}  {row['targets']}"
        )
    print(
        f"({len(rows)} record(s){', the newest ' + str(len(rows)) if len(rows) == int(params['limit'] or 1000) else ''})"
    )


if __name__ == "__main__":
    main()
