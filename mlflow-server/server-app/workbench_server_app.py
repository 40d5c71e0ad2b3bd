"""The workbench's MLflow server app: MLflow's basic-auth app with fast paths.

`mlflow server --app-name workbench` (the `mlflow.app` entry point, pyproject.toml) builds
MLflow's own basic-auth app (mlflow.server.auth:create_app) and puts an ASGI app in front of it.

MLflow's app runs every request through three `BaseHTTPMiddleware`s (auth permissions, gateway
timing, workspaces) on its way to a route or the Flask mount: ~2 ms of CPU a request here, and
for an upload, a hop through all three for every chunk of its body. For the calls below, all
three only pass the request on (no workspaces, not a gateway path, and the authorization is done
here, by MLflow's own checks), so the fast paths run the app's other middlewares (host
validation, CORS, security headers: KEPT_MIDDLEWARES, an explicit allow-list) around their answer:

1. **Metric writes.** `log-metric` and a metrics-only `log-batch`, the calls a training loop
   makes all the time, are answered with one prepared SQL statement instead of going on through
   the WSGI bridge, Flask, the auth app's user lookup and the ORM's five statements.
   - It writes what MLflow's store writes: each distinct metric of the call once; NaN as 0 with
     `is_nan`; +-Infinity as +-max double; `latest_metrics` moved to the greatest
     (step, timestamp, value) of the key. tests/mlflow-server/test_server_app.py compares the
     rows with those MLflow's own store writes for the same calls.
   - It authenticates with the cached basic-auth check MLflow's native FastAPI routes use
     (`_authenticate_fastapi_request`), and a user who is not an admin is authorized by MLflow's
     own before-request check (`_before_request`, in a Flask request context built from the
     request).
   - Anything it is not sure to answer as MLflow would goes on to MLflow's app unchanged, body
     and all: a request that fails authentication or authorization, any field besides the plain
     metric ones (model_id, dataset_*, params, tags), a value MLflow's validation refuses, a run
     that does not exist or is deleted, an exact duplicate of a stored metric, and any database
     error. Every refusal and every error message is MLflow's own.
2. **Artifact uploads and downloads** (the proxied `mlflow-artifacts` routes): authenticated the
   same way, a user who is not an admin authorized by MLflow's own validator of those routes, and
   then MLflow's own upload route function; downloads (3.) streamed.
3. **Streamed downloads.** The download route, also registered ahead of MLflow's own for what
   goes through MLflow's middlewares, streams an artifact from the FTP RETR to the client, with
   its Content-Length, instead of copying the whole file to the server's /tmp first. Anything but
   a plain file of the workbench's FTP store goes to MLflow's own route.

They run only where they were verified. create_app resolves every MLflow name they use (private
ones too) once, and starts with them **off**, MLflow's own app answering everything, when a name
is missing or its parameters changed, MLflow is not VERIFIED_MLFLOW_VERSION, the database schema
is not the one recorded at the image's build, MLflow's middleware list holds one they do not
know, or WORKBENCH_FAST_PATHS=false. It says why in one log line, in GET /health/fast-paths and
in the workbench_fast_paths_enabled gauge. WORKBENCH_STREAMED_DOWNLOADS=false turns 3. off alone.
Off, the app is MLflow's basic-auth app as it is, behind the request guard.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import time

import anyio

_logger = logging.getLogger(__name__)

# Upper bound of a request body the fast path reads before handing it on (a 1,000-metric batch
# with long keys is well under it); bigger ones go to MLflow as they are.
MAX_BODY_BYTES = 1 << 21
MAX_BATCH_METRICS = 1000  # MLflow's MAX_METRICS_PER_BATCH
# What MLflow's store writes for +-Infinity (SqlAlchemyStore.sanitize_metric_value).
MAX_DOUBLE = 1.7976931348623157e308
METRIC_FIELDS = {"key", "value", "timestamp", "step"}
LOG_METRIC_FIELDS = METRIC_FIELDS | {"run_id", "run_uuid"}
LOG_BATCH_FIELDS = {"run_id", "metrics", "params", "tags"}
SPECIAL_DOUBLES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
UNIQUE_VIOLATION = "23505"

# One statement, prepared once per connection, run in autocommit (one round trip a call). It
# writes nothing unless the run exists and is active, and says whether it did. A metric equal to
# one already stored (the primary key covers every column) fails the whole statement, and
# MLflow's store, which skips such duplicates, writes the call instead: rare, and cheaper than
# ON CONFLICT on every row.
_PREPARE = """
PREPARE workbench_log_metrics (varchar, varchar[], float8[], bigint[], bigint[], boolean[],
                               varchar[], float8[], bigint[], bigint[], boolean[]) AS
WITH run AS (
    SELECT run_uuid FROM runs WHERE run_uuid = $1 AND lifecycle_stage = 'active'
), new_metrics AS (
    INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid)
    SELECT m.key, m.value, m.timestamp, m.step, m.is_nan, run.run_uuid
    FROM run, unnest($2, $3, $4, $5, $6) AS m (key, value, timestamp, step, is_nan)
), new_latest AS (
    INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)
    SELECT l.key, l.value, l.timestamp, l.step, l.is_nan, run.run_uuid
    FROM run, unnest($7, $8, $9, $10, $11) AS l (key, value, timestamp, step, is_nan)
    ORDER BY l.key
    ON CONFLICT (key, run_uuid) DO UPDATE
    SET value = EXCLUDED.value, timestamp = EXCLUDED.timestamp, step = EXCLUDED.step,
        is_nan = EXCLUDED.is_nan
    WHERE (EXCLUDED.step, EXCLUDED.timestamp, EXCLUDED.value)
        > (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)
)
SELECT count(*) FROM run
"""
_EXECUTE = "EXECUTE workbench_log_metrics (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


def _setting(name: str) -> bool:
    return os.environ.get(name, "true").strip().lower() not in ("false", "0", "no", "off")


# ---- what the fast paths depend on, checked once per worker in create_app ----------------------

# The MLflow release the fast paths were verified with: tests/mlflow-server pass with them on and
# off. Another MLflow starts with them off until they are verified again and this is moved
# (mlflow-server/README.md, "Upgrading MLflow").
VERIFIED_MLFLOW_VERSION = "3.17.2"
# Every MLflow name the fast paths use, the private ones too: (module, name, its parameters, or
# None for a value). One missing, or a function whose parameters changed, turns them off.
MLFLOW_NAMES = {
    "authenticate": ("mlflow.server.auth", "_authenticate_fastapi_request", ("request",)),
    "before_request": ("mlflow.server.auth", "_before_request", ()),
    "find_validator": ("mlflow.server.auth", "_find_fastapi_validator", ("path", "method")),
    "response_filters": ("mlflow.server.auth", "FASTAPI_ENDPOINT_RESPONSE_FILTERS", None),
    "auth_config": ("mlflow.server.auth", "auth_config", None),
    "static_prefix_env_var": ("mlflow.server.auth", "STATIC_PREFIX_ENV_VAR", None),
    "default_authorization": ("mlflow.server.auth.config", "DEFAULT_AUTHORIZATION_FUNCTION", None),
    "enable_workspaces": ("mlflow.environment_variables", "MLFLOW_ENABLE_WORKSPACES", None),
    "upload_artifact": ("mlflow.server.artifact_router", "upload_artifact", ("artifact_path", "request")),
    "download_artifact": ("mlflow.server.artifact_router", "download_artifact", ("artifact_path",)),
    "serving_proxied_artifacts": ("mlflow.server.artifact_router", "_is_serving_proxied_artifacts", ()),
    "workspace_scoped_path": (
        "mlflow.server.artifact_router",
        "_get_workspace_scoped_path",
        ("artifact_path",),
    ),
    "artifact_repo": ("mlflow.server.artifact_router", "_get_artifact_repo", ()),
    "content_disposition": ("mlflow.server.artifact_router", "_content_disposition", ("filename",)),
    "guess_mime_type": ("mlflow.utils.mime_type_utils", "_guess_mime_type", ("file_path",)),
    "validate_path_is_safe": ("mlflow.utils.uri", "validate_path_is_safe", ("path",)),
    "validate_metric": (
        "mlflow.utils.validation",
        "_validate_metric",
        ("key", "value", "timestamp", "step", "path"),
    ),
    "validate_run_id": ("mlflow.utils.validation", "_validate_run_id", ("run_id", "path")),
    "MlflowException": ("mlflow.exceptions", "MlflowException", None),
}
# MLflow's middlewares (its app's own list) and what the fast paths do with each: these three
# `@app.middleware("http")` functions only pass a metric write or an artifact transfer on (no
# workspaces, not a gateway path, and the authorization is done by MLflow's own checks here), so
# they are left out; these classes run around the fast paths' answers. Anything else in the list
# turns the fast paths off: it might do something for these calls.
SKIPPED_MIDDLEWARES = {
    "fastapi_permission_middleware",
    "gateway_timing_middleware",
    "workspace_context_middleware",
}
KEPT_MIDDLEWARES = {
    "SecurityHeadersMiddleware",
    "CORSBlockingMiddleware",
    "CORSMiddleware",
    "HostValidationMiddleware",
}
# The schema revisions of the image's MLflow, recorded at build (mlflow-server/Dockerfile): the
# fast metric path writes MLflow's tables itself.
SCHEMA_HEADS = os.environ.get("WORKBENCH_SCHEMA_HEADS", "/opt/mlflow-server/schema-heads.json")
STATUS_PATH = "/health/fast-paths"
# Seconds a client refused for a busy artifact store (503) is told to wait.
RETRY_AFTER = "5"

# The resolved names (a namespace of MLFLOW_NAMES' keys), set by create_app when all were found.
mlflow_api = None


class _Off(Exception):
    """Why the fast paths stay off in this worker."""


def _resolve_mlflow_names():
    import importlib
    import inspect
    import types

    found = {}
    for key, (module_name, name, parameters) in MLFLOW_NAMES.items():
        try:
            value = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            raise _Off(f"{module_name}.{name} is gone") from None
        if parameters is not None:
            try:
                actual = tuple(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                actual = None
            if actual != parameters:
                raise _Off(f"{module_name}.{name} changed: parameters {actual}, verified with {parameters}")
        found[key] = value
    return types.SimpleNamespace(**found)


def _middlewares_to_keep(app) -> list:
    """MLflow's middlewares the fast paths run around their answers, outermost first."""
    kept = []
    for middleware in app.user_middleware:  # [0] is the outermost
        dispatch = middleware.kwargs.get("dispatch")
        name = getattr(dispatch, "__name__", None) if dispatch is not None else middleware.cls.__name__
        if name in SKIPPED_MIDDLEWARES and dispatch is not None:
            continue
        if name not in KEPT_MIDDLEWARES or dispatch is not None:
            raise _Off(f"MLflow's app has a middleware the fast paths do not know: {name}")
        kept.append(middleware)
    return kept


def _schema_is_current() -> None:
    import sqlalchemy

    try:
        with open(SCHEMA_HEADS) as file:
            head = json.load(file)["tracking"]
    except (OSError, ValueError, KeyError) as exc:
        raise _Off(f"no schema head recorded at build ({SCHEMA_HEADS}: {exc.__class__.__name__})") from None
    engine = sqlalchemy.create_engine(
        os.environ["MLFLOW_BACKEND_STORE_URI"], poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.connect() as connection:
            revision = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # noqa: BLE001 (any failure of a check is a reason to stay off)
        raise _Off(f"the database's schema revision could not be read ({exc.__class__.__name__})") from None
    finally:
        engine.dispose()
    if revision != head:
        raise _Off(f"the database's schema is at {revision}, the fast paths write the tables of {head}")


def _why_fast_paths_are_off(app) -> tuple[str | None, list]:
    """(None, the middlewares to keep) when the fast paths can run, else (why not, [])."""
    import mlflow

    global mlflow_api
    try:
        if not _setting("WORKBENCH_FAST_PATHS"):
            raise _Off("WORKBENCH_FAST_PATHS=false")
        names = _resolve_mlflow_names()
        if mlflow.__version__ != VERIFIED_MLFLOW_VERSION:
            raise _Off(
                f"MLflow {mlflow.__version__} is not the version they were verified with ({VERIFIED_MLFLOW_VERSION})"
            )
        if (
            names.auth_config.authorization_function != names.default_authorization
            or names.enable_workspaces.get()
            or os.environ.get(names.static_prefix_env_var)
        ):
            raise _Off("custom authorization, workspaces or a static prefix")
        kept = _middlewares_to_keep(app)
        _schema_is_current()
    except _Off as off:
        return str(off), []
    except Exception as exc:  # whatever it is, MLflow's own app answers
        _logger.exception("workbench: checking the fast paths failed")
        return f"checking them failed: {exc.__class__.__name__}: {exc}", []
    mlflow_api = names
    return None, kept


def create_app():
    """The `mlflow.app` factory."""
    import mlflow
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as create_basic_auth_app

    # Outermost, whatever the settings: the audit trail (it sees every request, refused ones too),
    # then the request guard (its docstring says why).
    from workbench_audit import AuditTrail, add_audit_route
    from workbench_guard import RequestGuard

    app = create_basic_auth_app(flask_app)
    if not hasattr(app, "router"):  # not under uvicorn: MLflow's Flask app, as it is
        return app
    reason, kept = _why_fast_paths_are_off(app)
    status = {
        "fast_paths": "off" if reason else "on",
        "reason": reason,
        "mlflow_version": mlflow.__version__,
        "verified_mlflow_version": VERIFIED_MLFLOW_VERSION,
    }
    _add_status_route(app, status)
    add_audit_route(app)
    _FastPathGauge().set(reason is None)
    if reason:
        _logger.warning("workbench: fast paths OFF (%s): MLflow's own app answers every request", reason)
        return AuditTrail(RequestGuard(app))
    streamed = _setting("WORKBENCH_STREAMED_DOWNLOADS")
    if streamed:
        _add_streamed_downloads(app)
    _logger.info("workbench: fast paths on (MLflow %s)", mlflow.__version__)
    return AuditTrail(RequestGuard(FastPaths(app, flask_app, kept, streamed_downloads=streamed)))


def _add_status_route(app, status: dict) -> None:
    """GET /health/fast-paths: whether the fast paths are on in this worker, and if not, why. Under
    /health, which MLflow's auth leaves open, through MLflow's middlewares."""
    from fastapi.routing import APIRoute

    async def fast_paths_status():
        return status

    app.router.routes.insert(0, APIRoute(STATUS_PATH, fast_paths_status, methods=["GET"]))


class _FastPathGauge:
    """workbench_fast_paths_enabled: 1 when every live worker runs the fast paths, 0 when one does
    not (its reason is in the log and at /health/fast-paths)."""

    def __init__(self):
        self._gauge = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import Gauge

            self._gauge = Gauge(
                "workbench_fast_paths_enabled",
                "Whether the fast paths are on (0: MLflow answers all)",
                multiprocess_mode="livemin",
            )

    def set(self, on: bool) -> None:
        if self._gauge is not None:
            self._gauge.set(1 if on else 0)


# ---- 1. and 2. the fast paths ----------------------------------------------------------------


class _HandOn(Exception):
    """This request is MLflow's to answer: hand it on unchanged."""


class FastPaths:
    """ASGI app in front of MLflow's FastAPI app: answers metric writes and artifact transfers
    after MLflow's own checks, and hands everything else (and all it will not answer) on."""

    METRIC_PATHS = {
        "/api/2.0/mlflow/runs/log-metric": "log-metric",
        "/ajax-api/2.0/mlflow/runs/log-metric": "log-metric",
        "/api/2.0/mlflow/runs/log-batch": "log-batch",
        "/ajax-api/2.0/mlflow/runs/log-batch": "log-batch",
    }
    ARTIFACT_PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts/", "/ajax-api/2.0/mlflow-artifacts/artifacts/")
    ARTIFACT_CALLS = {"GET": "artifact-download", "PUT": "artifact-upload"}

    def __init__(self, app, flask_app, kept_middlewares: list, *, streamed_downloads: bool):
        self.app = app
        self.flask_app = flask_app
        self.streamed_downloads = streamed_downloads
        self._engine = None
        self._metrics = _RequestMetrics()
        self._checked = {}
        for name, answer in (("metrics", self._answer_metrics), ("artifacts", self._answer_artifact)):
            for middleware in reversed(kept_middlewares):  # [0] is the outermost
                answer = middleware.cls(answer, *middleware.args, **middleware.kwargs)
            self._checked[name] = answer

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and path in self.METRIC_PATHS:
                kind = "metrics"
            elif method in self.ARTIFACT_CALLS and path.startswith(self.ARTIFACT_PREFIXES):
                kind = "artifacts"
            else:
                kind = None
            if kind:
                scope = {**scope, "workbench.asgi": (receive, send)}
                return await self._checked[kind](scope, receive, send)
        return await self.app(scope, receive, send)

    async def _hand_on(self, scope, receive):
        """MLflow's whole app answers, as if the request had come straight to it."""
        first_receive, first_send = scope.pop("workbench.asgi")
        await self.app(scope, receive or first_receive, first_send)

    # -- metric writes -----------------------------------------------------------------------

    async def _answer_metrics(self, scope, receive, send):
        started = time.perf_counter()
        call = self.METRIC_PATHS[scope["path"]]
        body, complete = await _read_body(receive, MAX_BODY_BYTES)
        if complete:
            try:
                await anyio.to_thread.run_sync(self._write, scope, body, call)
            except _HandOn:
                pass
            else:
                await _send_empty_json(send)
                self._metrics.answered(call, time.perf_counter() - started)
                return
        self._metrics.handed_on(call)
        first_receive, _ = scope["workbench.asgi"]
        await self._hand_on(scope, _replay(body, complete, first_receive))

    # -- artifact transfers ------------------------------------------------------------------

    async def _answer_artifact(self, scope, receive, send):
        from fastapi import Request
        from fastapi.exception_handlers import http_exception_handler
        from fastapi.exceptions import HTTPException
        from starlette.requests import ClientDisconnect

        started = time.perf_counter()
        call = self.ARTIFACT_CALLS[scope["method"]]
        request = Request(scope, receive)
        if not await self._may_transfer(request, scope["path"], scope["method"]):
            self._metrics.handed_on(call)
            return await self._hand_on(scope, None)
        prefix = next(p for p in self.ARTIFACT_PREFIXES if scope["path"].startswith(p))
        artifact_path = scope["path"][len(prefix) :]
        try:
            if call == "artifact-upload":
                response = await mlflow_api.upload_artifact(artifact_path, request)
            elif self.streamed_downloads:
                response = await download_artifact(artifact_path)
            else:
                response = await mlflow_api.download_artifact(artifact_path)
        except HTTPException as exc:  # as FastAPI answers it
            response = await http_exception_handler(request, exc)
        except ClientDisconnect:  # an upload broken off: FTP aborted it; nobody to answer
            _logger.info("workbench: the client left during the upload of %s", artifact_path)
            return
        await response(scope, receive, send)
        self._metrics.answered(call, time.perf_counter() - started)

    async def _may_transfer(self, request, path: str, method: str) -> bool:
        """MLflow's own checks of these routes (its FastAPI permission middleware's): the cached
        basic-auth login, and for a user who is not an admin, the routes' validator. False: let
        MLflow's app decide (and say why)."""
        user = await anyio.to_thread.run_sync(mlflow_api.authenticate, request)
        if user is None:
            return False
        request.state.username, request.state.user_id = user.username, user.id  # as MLflow's does
        if user.is_admin:
            return True
        validator = mlflow_api.find_validator(path, method)
        endpoint = mlflow_api.upload_artifact if method == "PUT" else mlflow_api.download_artifact
        if validator is None or mlflow_api.response_filters.get(endpoint) is not None:
            return False
        try:
            return bool(await validator(user.username, request))
        except mlflow_api.MlflowException:
            return False

    # -- in a worker thread ------------------------------------------------------------------

    def _write(self, scope, body: bytes, call: str) -> None:
        from starlette.requests import Request

        try:
            user = mlflow_api.authenticate(Request(scope))
            if user is None:
                raise _HandOn  # MLflow answers 401
            try:
                payload = json.loads(body)
            except ValueError:
                raise _HandOn from None
            run_uuid, metrics = _metrics_of(payload, call)
            if not user.is_admin:
                self._authorize_as_mlflow_does(scope, body)
        except _HandOn:
            raise
        except Exception:
            _logger.warning("workbench: fast metric path check failed; MLflow answers", exc_info=True)
            raise _HandOn from None
        self._insert(run_uuid, metrics)

    def _authorize_as_mlflow_does(self, scope, body) -> None:
        """MLflow's own before-request check (authentication, then the permission on the run) in a
        Flask request context built from this request. Any refusal goes on to MLflow to answer."""
        from starlette.requests import Request

        headers = {
            name: value
            for name, value in Request(scope).headers.items()
            if name not in ("content-length", "host")
        }
        with self.flask_app.test_request_context(scope["path"], method="POST", data=body, headers=headers):
            try:
                refused = mlflow_api.before_request()
            except mlflow_api.MlflowException:  # e.g. no such run: MLflow's own answer says so
                raise _HandOn from None
        if refused is not None:
            raise _HandOn

    def _insert(self, run_uuid: str, metrics: list[tuple]) -> None:
        latest: dict[str, tuple] = {}
        for row in metrics:  # the greatest (step, timestamp, value) of each key; the first of equals
            key, value, timestamp, step, _ = row
            best = latest.get(key)
            if best is None or (step, timestamp, value) > (best[3], best[2], best[1]):
                latest[key] = row
        columns = [list(column) for column in zip(*metrics, strict=True)]
        latest_columns = [list(column) for column in zip(*sorted(latest.values()), strict=True)]
        try:
            conn = self._get_engine().raw_connection()
        except Exception:
            _logger.warning("workbench: no database connection for the fast metric path", exc_info=True)
            raise _HandOn from None
        try:
            with conn.cursor() as cur:
                cur.execute(_EXECUTE, [run_uuid, *columns, *latest_columns])
                (found,) = cur.fetchone()
        except Exception as exc:
            # A duplicate, a lost connection, a deadlock, anything: the statement wrote nothing
            # (one statement, autocommit), and MLflow's store (which skips duplicates and retries
            # deadlocks) writes the call instead.
            if getattr(exc, "pgcode", None) == UNIQUE_VIOLATION:
                conn.close()
            else:
                _logger.warning("workbench: fast metric path failed; MLflow's store writes it", exc_info=True)
                conn.invalidate()
            raise _HandOn from None
        conn.close()  # back to the pool
        if found != 1:  # no such run, or deleted: nothing was written, and MLflow says why
            raise _HandOn

    def _get_engine(self):
        if self._engine is None:
            import sqlalchemy

            engine = sqlalchemy.create_engine(
                os.environ["MLFLOW_BACKEND_STORE_URI"],
                isolation_level="AUTOCOMMIT",
                pool_size=int(os.environ.get("WORKBENCH_FAST_PATHS_POOL_SIZE", "4")),
                max_overflow=0,
                pool_recycle=3600,
            )

            @sqlalchemy.event.listens_for(engine, "connect")
            def prepare(dbapi_connection, _record):
                dbapi_connection.autocommit = True
                with dbapi_connection.cursor() as cur:
                    cur.execute(_PREPARE)

            self._engine = engine
        return self._engine


def _metrics_of(payload, call: str) -> tuple[str, list[tuple]]:
    """(run_uuid, [(key, value, timestamp, step, is_nan), ...]) as MLflow's store writes them, each
    distinct one once in the order given; _HandOn for anything MLflow should answer."""
    if not isinstance(payload, dict):
        raise _HandOn
    if call == "log-metric":
        if not payload.keys() <= LOG_METRIC_FIELDS:
            raise _HandOn
        # MLflow's handler requires run_id (run_uuid, the old name, only beside it) and uses it.
        run_uuid = payload.get("run_id")
        raw, paths = [payload], [""]
    else:
        if not payload.keys() <= LOG_BATCH_FIELDS or payload.get("params") or payload.get("tags"):
            raise _HandOn
        run_uuid, raw = payload.get("run_id"), payload.get("metrics")
        if not isinstance(raw, list) or not 0 < len(raw) <= MAX_BATCH_METRICS:
            raise _HandOn
        paths = [f"metrics[{i}]" for i in range(len(raw))]
    if not isinstance(run_uuid, str) or not run_uuid:
        raise _HandOn
    rows: dict[tuple, None] = {}
    valid_keys: set[str] = set()
    try:
        mlflow_api.validate_run_id(run_uuid)
        for metric, path in zip(raw, paths, strict=True):
            key, value, timestamp, step = _metric_fields(metric, call)
            if key not in valid_keys:
                mlflow_api.validate_metric(key, value, timestamp, step, path=path)
                valid_keys.add(key)
            elif timestamp < 0:  # all _validate_metric checks that a key already passed leaves
                raise _HandOn
            if math.isnan(value):
                row = (key, 0.0, timestamp, step, True)
            elif math.isinf(value):
                row = (key, MAX_DOUBLE if value > 0 else -MAX_DOUBLE, timestamp, step, False)
            else:
                row = (key, value, timestamp, step, False)
            rows.setdefault(row, None)
    except mlflow_api.MlflowException:
        raise _HandOn from None
    return run_uuid, list(rows)


def _metric_fields(metric, call: str) -> tuple[str, float, int, int]:
    """A metric's fields as protobuf's JSON parser reads them, or _HandOn."""
    if not isinstance(metric, dict) or (call == "log-batch" and not metric.keys() <= METRIC_FIELDS):
        raise _HandOn
    key, value = metric.get("key"), metric.get("value")
    timestamp, step = _int64(metric.get("timestamp")), _int64(metric.get("step", 0))
    if isinstance(value, str):
        value = SPECIAL_DOUBLES.get(value)
    if not isinstance(key, str) or not key or timestamp is None or step is None:
        raise _HandOn
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _HandOn
    try:
        value = float(value)  # a JSON integer is a double to protobuf; one too big for it: MLflow's
    except OverflowError:
        raise _HandOn from None
    return key, value, timestamp, step


def _int64(value) -> int | None:
    """A JSON int64 as protobuf reads it (a number or a string of digits), or None."""
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 63:
        return None
    return value


async def _read_body(receive, limit: int) -> tuple[bytes, bool]:
    """The request body, or (what was read, False) once it is over `limit` or the client left."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def _replay(body: bytes, complete: bool, receive):
    """`receive` for the app we hand on to: first what we read, then the rest of the request."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


async def _send_empty_json(send) -> None:
    # MLflow answers both calls with an empty JSON object (LogMetric.Response, LogBatch.Response).
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


class _RequestMetrics:
    """Prometheus figures of the fast paths, when MLflow exposes them (MLFLOW_EXPOSE_PROMETHEUS):
    MLflow's own mlflow_http_request_* count only what Flask answers, so the fast paths' answers
    are counted here, and what they hand on to MLflow (then counted by MLflow too):
    workbench_fast_path_requests_total{call, path="fast"|"handed-on"} and
    workbench_fast_path_request_duration_seconds{call} of the answered ones."""

    def __init__(self):
        self._requests = self._duration = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return
        from prometheus_client import Counter, Histogram

        self._requests = Counter(
            "workbench_fast_path_requests",
            "Metric writes and artifact transfers, by who answered: a fast path or MLflow",
            ["call", "path"],
        )
        self._duration = Histogram(
            "workbench_fast_path_request_duration_seconds",
            "Duration of the requests a fast path answered",
            ["call"],
        )

    def answered(self, call: str, seconds: float) -> None:
        if self._requests is not None:
            self._requests.labels(call=call, path="fast").inc()
            self._duration.labels(call=call).observe(seconds)

    def handed_on(self, call: str) -> None:
        if self._requests is not None:
            self._requests.labels(call=call, path="handed-on").inc()


# ---- 2. streamed downloads -------------------------------------------------------------------


def _add_streamed_downloads(app) -> None:
    from fastapi.routing import APIRoute

    for path in (
        "/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
    ):
        # Ahead of MLflow's own routes for these paths (which come first among the app's routes).
        app.router.routes.insert(0, APIRoute(path, download_artifact, methods=["GET"]))


async def download_artifact(artifact_path: str):
    """An artifact from the workbench's FTP store, streamed from the RETR; anything else (another
    store, a directory, a missing file, a bad path) is MLflow's own route's to answer."""
    from fastapi.responses import JSONResponse, StreamingResponse

    try:
        if not mlflow_api.serving_proxied_artifacts():
            raise _HandOn
        path = mlflow_api.workspace_scoped_path(mlflow_api.validate_path_is_safe(artifact_path))
        open_stream = getattr(mlflow_api.artifact_repo(), "open_download_stream", None)
        if open_stream is None:
            raise _HandOn
        stream = await open_stream(path)
        if stream is None:
            raise _HandOn
    except Exception as exc:  # noqa: BLE001 (anything unexpected: MLflow's own route answers)
        if getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            # The FTP plugin's bound on large downloads: a 503 now, saying when to come back
            # (MLflow's own route would answer it without Retry-After).
            return JSONResponse(
                json.loads(exc.serialize_as_json()), 503, headers={"Retry-After": RETRY_AFTER}
            )
        return await mlflow_api.download_artifact(artifact_path)
    size, chunks = stream
    filename = posixpath.basename(path)
    return StreamingResponse(
        chunks,
        headers={
            "Content-Length": str(size),
            "Content-Type": mlflow_api.guess_mime_type(filename),
            "Content-Disposition": mlflow_api.content_disposition(filename),
            "X-Content-Type-Options": "nosniff",
        },
    )
