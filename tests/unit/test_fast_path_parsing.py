"""mlflow-server/server-app: how the fast metric path reads a log-metric or log-batch body, and
that everything it does not read the way protobuf's JSON parser would goes on to MLflow
(_HandOn: MLflow's own app answers it, with its own message). MLflow's validation of the values
and the rows written are checked against the real server in tests/mlflow-server/test_server_app.py."""

from __future__ import annotations

import math

import pytest

import workbench_server_app as app

INT64_MAX = (1 << 63) - 1


@pytest.mark.parametrize(
    ("given", "read"),
    [
        (5, 5),
        ("5", 5),
        ("-5", -5),
        (0, 0),
        (INT64_MAX, INT64_MAX),
        (str(INT64_MAX), INT64_MAX),
        (-(1 << 63), -(1 << 63)),
    ],
)
def test_int64_reads_numbers_and_strings_of_digits(given, read):
    assert app._int64(given) == read


@pytest.mark.parametrize(
    "given",
    [
        INT64_MAX + 1,
        str(INT64_MAX + 1),
        -(1 << 63) - 1,
        True,
        False,
        1.5,
        "1.5",
        "",
        "-",
        "12a",
        None,
        [1],
    ],
)
def test_int64_refuses_what_is_not_an_int64(given):
    assert app._int64(given) is None


def test_metric_fields_as_protobuf_reads_them():
    read = app._metric_fields(
        {"key": "loss", "value": 1, "timestamp": "1700000000000", "step": "3"}, "log-batch"
    )
    assert read == ("loss", 1.0, 1700000000000, 3) and isinstance(read[1], float)
    assert app._metric_fields({"key": "loss", "value": 0.5, "timestamp": 1}, "log-batch")[3] == 0  # step 0
    assert math.isnan(app._metric_fields({"key": "k", "value": "NaN", "timestamp": 1}, "log-batch")[1])
    assert app._metric_fields({"key": "k", "value": "Infinity", "timestamp": 1}, "log-batch")[1] == math.inf
    assert app._metric_fields({"key": "k", "value": "-Infinity", "timestamp": 1}, "log-batch")[1] == -math.inf


@pytest.mark.parametrize(
    ("what", "metric"),
    [
        ("no key", {"value": 1.0, "timestamp": 1}),
        ("an empty key", {"key": "", "value": 1.0, "timestamp": 1}),
        ("no value", {"key": "k", "timestamp": 1}),
        ("a bool value", {"key": "k", "value": True, "timestamp": 1}),
        ("a number in a string", {"key": "k", "value": "1.5", "timestamp": 1}),
        ("a value too big for a double", {"key": "k", "value": 10**400, "timestamp": 1}),
        ("no timestamp", {"key": "k", "value": 1.0}),
        ("a float step", {"key": "k", "value": 1.0, "timestamp": 1, "step": 1.5}),
        ("an unknown field in a batch", {"key": "k", "value": 1.0, "timestamp": 1, "model_id": "m-1"}),
        ("not an object", ["k", 1.0, 1]),
    ],
)
def test_metric_fields_hand_on_what_they_do_not_read(what, metric):
    with pytest.raises(app._HandOn):
        app._metric_fields(metric, "log-batch")


def batch(n: int) -> list[dict]:
    return [{"key": f"m{i}", "value": 1.0, "timestamp": 1, "step": 0} for i in range(n)]


@pytest.mark.parametrize(
    ("what", "call", "payload"),
    [
        ("not an object", "log-batch", [{"run_id": "r"}]),
        (
            "params in a batch",
            "log-batch",
            {"run_id": "r", "metrics": batch(1), "params": [{"key": "p", "value": "1"}]},
        ),
        (
            "tags in a batch",
            "log-batch",
            {"run_id": "r", "metrics": batch(1), "tags": [{"key": "t", "value": "1"}]},
        ),
        (
            "a field MLflow's batch does not have",
            "log-batch",
            {"run_id": "r", "metrics": batch(1), "model_id": "m"},
        ),
        ("an empty batch", "log-batch", {"run_id": "r", "metrics": []}),
        (
            "more metrics than MLflow takes in one batch",
            "log-batch",
            {"run_id": "r", "metrics": batch(app.MAX_BATCH_METRICS + 1)},
        ),
        ("metrics not a list", "log-batch", {"run_id": "r", "metrics": {"key": "k"}}),
        ("no run_id", "log-batch", {"metrics": batch(1)}),
        ("a run_id that is not a string", "log-batch", {"run_id": 7, "metrics": batch(1)}),
        ("only the old run_uuid", "log-metric", {"run_uuid": "r", "key": "k", "value": 1.0, "timestamp": 1}),
        (
            "a dataset field",
            "log-metric",
            {"run_id": "r", "key": "k", "value": 1.0, "timestamp": 1, "dataset_name": "d"},
        ),
    ],
)
def test_calls_the_fast_path_does_not_answer_go_to_mlflow(what, call, payload):
    with pytest.raises(app._HandOn):
        app._metrics_of(payload, call)
