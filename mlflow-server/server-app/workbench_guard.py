"""The workbench's request guard: an ASGI app in front of everything else the server runs.

MLflow 3.17.2's basic-auth app decides a request's permission from one parameter while its
handler acts on another in a few places (issue 17; issue 14 #1, #2): the check reads `run_id`,
the handler `run_uuid`; the check reads a DELETE's query string, the handler its body; the
check takes the experiment from an artifact path a `./` prefix hides it in. Each rule below
refuses such an ambiguous or mismatched request before MLflow (or the workbench's fast paths)
sees it, whatever the settings (create_app in workbench_server_app.py always puts it outermost).
A refusal is a JSON answer in MLflow's error shape, one log line (user, rule, method, path;
never a password or a body) and one count of workbench_guard_refusals_total{rule}.

Every rule names the attack it stops and its test in tests/mlflow-server/test_authz_attacks.py;
after an MLflow upgrade, those attack tests (run with the guard's rule removed) say whether the
rule is still needed (mlflow-server/README.md, "Request guard").
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse

import anyio

_logger = logging.getLogger(__name__)

# Bodies the guard reads to compare them with the query string or look into them (MLflow's JSON
# calls, OTLP batches); a bigger one it cannot check is refused when a rule needs it.
MAX_BODY_BYTES = 32 << 20
MUTATING = {"POST", "PATCH", "PUT", "DELETE"}
API_PREFIXES = ("/api/", "/ajax-api/")
# Routes whose body is not JSON: the file of an upload (keys in the query), the sign-up form.
NOT_JSON_ROUTES = re.compile(
    r"^/(?:api|ajax-api)/2\.0/(?:mlflow-artifacts/artifacts/.*|mlflow/upload-artifact|mlflow/users/create-ui)$"
)
RUN_KEYS = ("run_id", "run_uuid", "runId", "runUuid")  # protobuf's JSON parser takes both spellings
ARTIFACT_PROXY = re.compile(
    r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/(artifacts|mpu/(?:create|complete|abort))/"
)
ARTIFACT_LISTING = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts$")
# Routes that take an artifact path in the query (listings, single-file reads, the UI's upload).
ARTIFACT_PATH_QUERY_ROUTES = re.compile(
    r"(?:/mlflow-artifacts/artifacts|/artifacts/list|get-artifact|upload-artifact|/artifacts/files)$"
)
ARTIFACT_PATH_PARAMS = ("path", "artifact_file_path")
# Percent-escapes that survive one decoding as '.', '/', '\' or another escape: MLflow's
# validate_path_is_safe decodes again (up to ten times), its permission check does not.
ENCODED_SEPARATORS = re.compile(r"%(?:2e|2f|5c|25)", re.IGNORECASE)
ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
TRACE_START = re.compile(r"^/(?:api|ajax-api)/3\.0/mlflow/traces$")
TRACE_ROUTES = re.compile(r"^/(?:api|ajax-api)/[23]\.0/mlflow/traces(?:/|$)")
# Trace tags MLflow reads as where a trace's data is (mlflow.utils.mlflow_tags, TraceTagKey):
# the server sets them; a client that sets them points its own trace at another one's data.
LOCATION_TAGS = {"mlflow.artifactLocation", "mlflow.trace.archiveLocation", "mlflow.trace.spansLocation"}


class Refusal(Exception):
    def __init__(
        self, rule: str, message: str, status: int = 400, error_code: str = "INVALID_PARAMETER_VALUE"
    ):
        super().__init__(message)
        self.rule, self.message, self.status, self.error_code = rule, message, status, error_code


def _forbidden(rule: str, message: str) -> Refusal:
    return Refusal(rule, message, 403, "PERMISSION_DENIED")


class Request:
    """What the rules look at: method, paths, query, headers, and the body once read (then
    replayed to the app)."""

    def __init__(self, scope, receive):
        self.scope, self._receive = scope, receive
        self.method, self.path = scope["method"], scope["path"]
        self.raw_path = (scope.get("raw_path") or self.path.encode()).decode("latin-1")
        self.query = urllib.parse.parse_qs(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
        )
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.media_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        self._body: bytes | None = None
        self._complete = True
        self._json = ...

    @property
    def is_json(self) -> bool:  # as Flask's request.is_json, which MLflow's check uses
        return self.media_type == "application/json" or (
            self.media_type.startswith("application/") and self.media_type.endswith("+json")
        )

    @property
    def has_body(self) -> bool:
        return self.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in self.headers

    async def body(self, rule: str | None) -> bytes | None:
        """The whole body; over MAX_BODY_BYTES, a refusal (or None when `rule` is None: the
        rule can do without it)."""
        if self._body is None:
            chunks, size = [], 0
            while True:
                message = await self._receive()
                if message["type"] != "http.request":
                    self._complete = False
                    break
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if not message.get("more_body", False):
                    break
                if size > MAX_BODY_BYTES:
                    self._complete = False
                    break
            self._body = b"".join(chunks)
        if not self._complete:
            if rule is None:
                return None
            raise Refusal(rule, f"Request body over {MAX_BODY_BYTES} bytes: too big to check", 413)
        return self._body

    async def json(self, rule: str | None):
        """The body as JSON (None when it is not JSON): what MLflow's handlers parse."""
        body = await self.body(rule) if self.has_body else None
        if body is None:
            return None
        if self._json is ...:
            try:
                self._json = json.loads(body)
            except ValueError:
                self._json = None
        return self._json

    def receive(self):
        """`receive` for the app: the body the guard read first, then the rest as it comes."""
        if self._body is None:
            return self._receive
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": self._body, "more_body": not self._complete}
            return await self._receive()

        return replay


# ---- the rules: each refuses (raises Refusal) or lets the request on -------------------------


async def run_id_equals_run_uuid(request: Request) -> None:
    """Issue 17 #1, artifact write into another user's run: upload-artifact?run_id=<own run>
    &run_uuid=<victim's run>: MLflow's check reads run_id, its handler writes to run_uuid. Every
    run_id / run_uuid (and protobuf's runId / runUuid spellings) of a request, in its query or
    its JSON body, must be one value. MLflow's own client sends both, equal: that goes on.
    Tests: test_run_id_and_run_uuid_must_agree, test_mlflows_client_logs_with_run_id_and_run_uuid."""
    values = {v for key in RUN_KEYS for v in request.query.get(key, [])}
    if request.method in MUTATING and request.is_json and request.has_body:
        body = await request.json(None)  # both in one body: MLflow's check and handler read the same
        if isinstance(body, dict):
            values |= {str(body[key]) for key in RUN_KEYS if key in body}
    if len(values) > 1:
        raise Refusal("run-id-mismatch", "run_id and run_uuid name different runs")


async def json_body_agrees_with_query(request: Request) -> None:
    """Issue 17 #2, registry deletes through a body the check never reads: DELETE
    registered-models/delete?name=<own model> with Content-Type text/plain and the body
    {"name": "<victim's model>"}: for a DELETE without a JSON content type, MLflow's check reads
    the query string, its handler parses the body as JSON anyway (model-versions/delete, the
    alias and tag deletes, every DELETE and PATCH route alike). A mutating /api or /ajax-api call
    with a body must say it is JSON (but for the uploads, whose body is the file), and a query
    parameter must not name another value than the body's field of the same name.
    Tests: test_delete_with_a_body_that_is_not_json, test_query_and_body_must_agree,
    test_the_uis_json_deletes_keep_working."""
    if request.method not in MUTATING or not request.path.startswith(API_PREFIXES):
        return
    if NOT_JSON_ROUTES.match(request.path):
        return
    if request.has_body and not request.is_json:
        raise Refusal(
            "body-not-json", "A request body to this route must be JSON (Content-Type: application/json)"
        )
    if request.query and request.has_body:
        body = await request.json("query-body-mismatch")
        if not isinstance(body, dict):
            return
        for key, values in request.query.items():
            if key in body and values != _as_query_values(body[key]):
                raise Refusal(
                    "query-body-mismatch", f"The query parameter {key!r} and the body's {key!r} differ"
                )


def _as_query_values(value) -> list[str] | None:
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]
    return None


async def canonical_artifact_paths(request: Request) -> None:
    """Issue 14 #1 and issue 17 #6, reads, writes and listings through a path MLflow's check
    does not see the experiment in: GET mlflow-artifacts/artifacts/%2e/<experiment>/... (or
    ./<experiment>, ?path=./<experiment>/...) is judged by the default permission, then served
    from <experiment>. An artifact path (the proxy routes' path, and the `path` query parameter
    of the listings and single-file reads) must be canonical: no '.', '..' or empty segment, no
    backslash, no escape that decodes to '.', '/', '\\' or another escape. Issue 14 #2: the
    store's root (an empty path: the server copies the whole store to its disk) is refused too,
    and so is a listing of it (every experiment id; MLflow's client and UI only ever list inside
    a run or an experiment, so it is refused for everyone, admins use the database or ftpd).
    Tests: test_non_canonical_artifact_paths_are_refused, test_non_canonical_listing_paths,
    test_the_store_root_is_refused."""
    rule = "artifact-path"
    if match := ARTIFACT_PROXY.match(request.path):
        raw = request.raw_path.removeprefix(match.group(0))
        artifact_path = request.path[len(match.group(0)) :]
        if ENCODED_SEPARATORS.search(raw):
            raise Refusal(rule, "Encoded '.', '/', '\\' or '%' in an artifact path")
        if request.method == "DELETE" and artifact_path.endswith("/"):
            artifact_path = artifact_path[:-1]  # a directory (MLflow's client deletes a run's as <path>/)
        _check_artifact_path(artifact_path, rule)
    elif ARTIFACT_LISTING.match(request.path) and request.method in ("GET", "HEAD"):
        if not any(request.query.get("path", [])):
            raise Refusal(rule, "Listing the artifact store's root is not served: give a path")
    if ARTIFACT_PATH_QUERY_ROUTES.search(request.path):
        for name in ARTIFACT_PATH_PARAMS:
            for value in request.query.get(name, []):
                if value:  # empty: the run's own root
                    _check_artifact_path(value, rule)


def _check_artifact_path(path: str, rule: str) -> None:
    if not path:
        raise Refusal(rule, "An empty artifact path names the whole store: give a file's path")
    if "\\" in path or ESCAPE.search(path):
        raise Refusal(rule, "Backslash or percent-escape in an artifact path")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise Refusal(rule, "Artifact paths must be canonical: no '.', '..' or empty segment")


async def no_directory_downloads(request: Request) -> None:
    """Issue 14 #2, whole-store or directory download: GET mlflow-artifacts/artifacts/<a
    directory> makes MLflow copy the whole tree from FTP to the server's disk before failing
    with IsADirectoryError (a few in parallel fill the disk). Refused at once, nothing staged;
    only for a caller MLflow's own check would let read it (anyone else gets MLflow's 401/403,
    so the answer says nothing about what exists). Test: test_directory_downloads_are_refused."""
    match = ARTIFACT_PROXY.match(request.path)
    if request.method not in ("GET", "HEAD") or not match or match.group(1) != "artifacts":
        return
    from mlflow.exceptions import MlflowException
    from mlflow.server import artifact_router as mlflow_routes
    from mlflow.server.auth import _authenticate_fastapi_request, _find_fastapi_validator
    from mlflow.utils.uri import validate_path_is_safe
    from starlette.requests import Request as StarletteRequest

    starlette_request = StarletteRequest(request.scope)
    user = await anyio.to_thread.run_sync(_authenticate_fastapi_request, starlette_request)
    if user is None:
        return
    request.username = user.username
    if not user.is_admin:
        validator = _find_fastapi_validator(request.path, request.method)
        try:
            if validator is None or not await validator(user.username, starlette_request):
                return
        except MlflowException:
            return
    try:
        path = mlflow_routes._get_workspace_scoped_path(
            validate_path_is_safe(request.path[len(match.group(0)) :])
        )
        entries = await anyio.to_thread.run_sync(mlflow_routes._get_artifact_repo().list_artifacts, path)
    except Exception:  # noqa: BLE001 - MLflow's route says what is wrong with it
        return
    if entries:
        raise Refusal(
            "directory-download", "This artifact path is a directory: download its files one by one"
        )


async def no_trace_takeover(request: Request) -> None:
    """Issue 17 #3, trace takeover: POST /api/3.0/mlflow/traces with an existing trace's id and
    the attacker's experiment as its location moves the victim's trace (spans, assessments)
    into the attacker's experiment: MLflow checks the location, not the id. Starting a trace
    whose id exists in another experiment is refused. Test: test_trace_takeover_is_refused."""
    if request.method != "POST" or not TRACE_START.match(request.path):
        return
    body = await request.json("trace-takeover")
    if not isinstance(body, dict):
        return
    from google.protobuf.json_format import ParseError
    from mlflow.protos.service_pb2 import StartTraceV3
    from mlflow.utils.proto_json_utils import parse_dict

    message = StartTraceV3()
    try:  # parsed as MLflow's handler parses it: every spelling protobuf accepts
        parse_dict(body, message)
    except (ParseError, ValueError, TypeError):
        return  # MLflow refuses it
    info = message.trace.trace_info
    if not info.trace_id:
        return
    existing = await anyio.to_thread.run_sync(_trace_experiment, info.trace_id)
    if existing is not None and existing != info.trace_location.mlflow_experiment.experiment_id:
        raise _forbidden("trace-takeover", f"Trace {info.trace_id} already exists in another experiment")


async def no_location_trace_tags(request: Request) -> None:
    """Issue 17 #4, trace data read through a tag: setting mlflow.artifactLocation on one's own
    trace to the victim's trace location, then get-trace-artifact?request_id=<own trace>,
    returns the victim's spans: MLflow reads a trace's data from where its tags say. Writes of
    the tags that locate a trace's data (set/delete tag, start and end trace) are refused; the
    server sets them. Test: test_location_trace_tags_are_refused."""
    if request.method not in MUTATING or not TRACE_ROUTES.match(request.path):
        return
    if any(key in LOCATION_TAGS for key in request.query.get("key", [])):
        raise Refusal("trace-location-tag", "Trace tags that locate trace data are set by the server only")
    if request.is_json and request.has_body and _names_location_tag(await request.json("trace-location-tag")):
        raise Refusal("trace-location-tag", "Trace tags that locate trace data are set by the server only")


def _names_location_tag(value) -> bool:
    """A location tag as a map key ({"tags": {key: value}}) or a key field ({"key": key})."""
    if isinstance(value, dict):
        return (
            value.get("key") in LOCATION_TAGS
            or any(k in LOCATION_TAGS for k in value)
            or any(_names_location_tag(v) for v in value.values())
        )
    if isinstance(value, list):
        return any(_names_location_tag(v) for v in value)
    return False


async def no_span_injection(request: Request) -> None:
    """Issue 17 #5, span injection: POST /v1/traces (OTLP) with X-Mlflow-Experiment-Id of the
    attacker's experiment and the victim's trace id writes the spans into the victim's trace:
    MLflow checks the header's experiment only. Spans of a trace that exists in another
    experiment are refused, and so is an X-Mlflow-Run-Id of a run in another experiment (the
    traces would be linked to it). Test: test_span_injection_is_refused."""
    if request.method != "POST" or request.path.rstrip("/") != "/v1/traces":
        return
    experiment_id = request.headers.get("x-mlflow-experiment-id")
    if not experiment_id or not request.has_body:
        return  # MLflow refuses it
    body = await request.body("span-injection")
    trace_ids = _otlp_trace_ids(body, request.media_type, request.headers.get("content-encoding", ""))
    for trace_id in sorted(trace_ids):
        existing = await anyio.to_thread.run_sync(_trace_experiment, trace_id)
        if existing is not None and existing != experiment_id:
            raise _forbidden("span-injection", f"Trace {trace_id} exists in another experiment")
    if run_id := request.headers.get("x-mlflow-run-id"):
        if await anyio.to_thread.run_sync(_run_experiment, run_id) not in (None, experiment_id):
            raise _forbidden("span-injection", "X-Mlflow-Run-Id names a run of another experiment")


def _otlp_trace_ids(body: bytes, media_type: str, encoding: str) -> set[str]:
    """The MLflow trace ids of an OTLP batch, decoded as MLflow's /v1/traces route decodes it;
    nothing when it cannot be decoded (MLflow's route refuses it then)."""
    from google.protobuf.json_format import Parse
    from mlflow.entities.span import Span
    from mlflow.server import otel_api
    from mlflow.tracing.utils.otlp import decompress_otlp_body
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    parsed = ExportTraceServiceRequest()
    try:
        if encoding:
            body = decompress_otlp_body(body, encoding.lower())
        if media_type == "application/json":
            Parse(otel_api._convert_otlp_json_ids_to_base64(body), parsed, ignore_unknown_fields=True)
        else:
            parsed.ParseFromString(body)
        return {
            Span.from_otel_proto(span, resource=resource_spans.resource).trace_id
            for resource_spans in parsed.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        }
    except Exception:  # noqa: BLE001 - MLflow's route refuses it, with its own message
        return set()


async def graphql_needs_a_json_body(request: Request) -> None:
    """Issue 17 (informational): GET /graphql?query=... with no body answers 500 (MLflow's
    handler reads a JSON body it does not check for). A GraphQL call without a JSON object body
    is a 400. Test: test_graphql_without_a_json_body_is_a_4xx."""
    if request.path != "/graphql":
        return
    body = await request.json("graphql") if request.is_json else None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise Refusal(
            "graphql", "GraphQL takes a JSON body with a query (POST, Content-Type: application/json)"
        )


RULES = [
    canonical_artifact_paths,
    run_id_equals_run_uuid,
    json_body_agrees_with_query,
    no_location_trace_tags,
    no_trace_takeover,
    no_span_injection,
    graphql_needs_a_json_body,
    no_directory_downloads,  # last: the only one that asks who the caller is
]


# ---- lookups ---------------------------------------------------------------------------------


def _trace_experiment(trace_id: str) -> str | None:
    """The experiment a trace is in, None when there is no such trace. MLflow's own store first;
    if that fails (its private name moved, its API changed), one SQL query on its table."""
    from mlflow.exceptions import MlflowException

    try:
        from mlflow.server.handlers import _get_tracking_store

        info = _get_tracking_store().get_trace_info(trace_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        _logger.warning(
            "workbench guard: MLflow's store could not look up trace %r (%s); asking the database",
            trace_id,
            exc.error_code,
        )
    except Exception:
        _logger.warning(
            "workbench guard: MLflow's store could not look up a trace; asking the database", exc_info=True
        )
    else:
        location = info.trace_location.mlflow_experiment
        return location.experiment_id if location else ""
    import sqlalchemy

    with _engine().connect() as conn:
        row = conn.execute(
            sqlalchemy.text("SELECT experiment_id FROM trace_info WHERE request_id = :id"), {"id": trace_id}
        ).first()
    return None if row is None else str(row[0])


def _run_experiment(run_id: str) -> str | None:
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    try:
        return _get_tracking_store().get_run(run_id).info.experiment_id
    except MlflowException:
        return None  # MLflow says what is wrong with it


_ENGINE = None


def _engine():
    global _ENGINE
    if _ENGINE is None:
        import sqlalchemy

        _ENGINE = sqlalchemy.create_engine(
            os.environ["MLFLOW_BACKEND_STORE_URI"], pool_size=1, max_overflow=1
        )
    return _ENGINE


# ---- the ASGI app ----------------------------------------------------------------------------


class RequestGuard:
    """Runs RULES on every HTTP request; a refused one never reaches the app."""

    def __init__(self, app):
        self.app = app
        self._refusals = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import Counter

            self._refusals = Counter(
                "workbench_guard_refusals", "Requests the request guard refused", ["rule"]
            )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            for rule in RULES:
                await rule(request)
        except Refusal as refusal:
            return await self._refuse(request, refusal, send)
        return await self.app(scope, request.receive(), send)

    async def _refuse(self, request: Request, refusal: Refusal, send) -> None:
        user = getattr(request, "username", None) or await anyio.to_thread.run_sync(_username, request.scope)
        _logger.warning(
            "workbench guard: refused rule=%s user=%s %s %r",
            refusal.rule,
            user,
            request.method,
            request.raw_path,
        )
        if self._refusals is not None:
            self._refusals.labels(rule=refusal.rule).inc()
        body = json.dumps({"error_code": refusal.error_code, "message": refusal.message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _username(scope) -> str:
    """Who sent a refused request, as MLflow authenticates it (cached); '-' when nobody."""
    try:
        from mlflow.server.auth import _authenticate_fastapi_request
        from starlette.requests import Request as StarletteRequest

        user = _authenticate_fastapi_request(StarletteRequest(scope))
    except Exception:  # noqa: BLE001 - only for the log line
        return "-"
    return user.username if user is not None else "-"
