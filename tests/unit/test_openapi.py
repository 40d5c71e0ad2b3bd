"""serving/openapi.py: the OpenAPI document of a served model, from its MLmodel file's signature
and its input example, as MLflow 3 writes them. For signatures tests/serving does not serve
(tensors, nested types, inference parameters, optional columns, none at all): each document is
valid OpenAPI 3.1, its examples fit its own request schema, and that schema refuses what the
model's signature refuses. tests/serving checks the same against a real served model."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

import openapi

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
FORMATS = {"dataframe_split", "dataframe_records", "instances", "inputs"}


def model_dir(tmp_path, inputs=None, outputs=None, params=None, example=None):
    """A model directory as mlflow.<flavor>.log_model writes it: MLmodel's signature holds each
    part as a JSON string; the input example is serving_input_example.json."""
    signature = {
        part: json.dumps(spec) if spec is not None else None
        for part, spec in (("inputs", inputs), ("outputs", outputs), ("params", params))
    }
    mlmodel = {"flavors": {"python_function": {"loader_module": "mlflow.sklearn"}}}
    if inputs is not None or outputs is not None:
        mlmodel["signature"] = signature
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    if example is not None:
        (tmp_path / "serving_input_example.json").write_text(json.dumps(example))
    return tmp_path


def request_schema(document: dict) -> dict:
    """The JSON request body's schema, standalone (its $refs resolve in the document's root)."""
    body = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    return {**body["schema"], "components": document["components"]}


def accepts(document: dict, body) -> bool:
    try:
        jsonschema.validate(body, request_schema(document))
    except jsonschema.ValidationError:
        return False
    return True


def test_columns_with_params_and_an_optional_column(tmp_path):
    inputs = [{"type": "double", "name": name, "required": True} for name in IRIS]
    inputs.append({"type": "string", "name": "note", "required": False})
    params = [
        {"name": "threshold", "type": "double", "default": 0.5, "shape": None},
        {"name": "labels", "type": "string", "default": ["a"], "shape": [-1]},
    ]
    rows = [[5.1, 3.5, 1.4, 0.2, "x"], [6.2, 2.9, 4.3, 1.3, "y"]]
    example = {"dataframe_split": {"columns": [*IRIS, "note"], "data": rows}, "params": {"threshold": 0.7}}
    directory = model_dir(tmp_path, inputs, [{"type": "long", "required": True}], params, example)

    document = openapi.document(directory, "iris", "3")
    validate(document)
    assert document["info"]["x-mlflow-model"] == {"name": "iris", "version": "3", "uri": "models:/iris/3"}
    schemas = document["components"]["schemas"]
    assert schemas["Row"]["required"] == IRIS  # not the optional column
    assert schemas["Predictions"]["properties"]["predictions"]["items"]["format"] == "int64"
    assert schemas["Params"]["properties"]["threshold"] == {
        "type": "number",
        "format": "double",
        "default": 0.5,
    }
    assert schemas["Params"]["properties"]["labels"]["type"] == "array"

    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    examples = content["application/json"]["examples"]
    assert set(examples) == FORMATS
    for fmt, example_body in examples.items():
        assert example_body["value"]["params"] == {"threshold": 0.7}, fmt
        assert accepts(document, example_body["value"]), fmt
    # One example, four spellings of the same rows.
    assert examples["inputs"]["value"]["inputs"]["note"] == ["x", "y"]
    assert examples["dataframe_records"]["value"]["dataframe_records"][1]["note"] == "y"
    assert content["text/csv"]["example"].splitlines() == [
        ",".join([*IRIS, "note"]),
        "5.1,3.5,1.4,0.2,x",
        "6.2,2.9,4.3,1.3,y",
    ]

    row = dict(zip(IRIS, [5.1, 3.5, 1.4, 0.2], strict=True))
    assert accepts(document, {"dataframe_records": [row]})  # the optional column left out
    assert accepts(document, {"dataframe_split": {"columns": IRIS[::-1], "data": [[1.0] * 4]}})
    refused = {
        "a required column missing": {"dataframe_split": {"columns": IRIS[:3], "data": [[1.0] * 3]}},
        "an unknown column": {"dataframe_split": {"columns": [*IRIS, "x"], "data": [[1.0] * 5]}},
        "a string for a double": {"dataframe_records": [{**row, IRIS[0]: "wide"}]},
        "an unknown format key": {"records": [row]},
        "an unknown param": {"dataframe_records": [row], "params": {"temperature": 1}},
        "a param of the wrong type": {"dataframe_records": [row], "params": {"threshold": "high"}},
    }
    for what, body in refused.items():
        assert not accepts(document, body), what


def test_a_tensor_signature(tmp_path):
    """One unnamed tensor (e.g. a Keras or PyTorch model): a row is an array of its dtype."""
    inputs = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]
    outputs = [{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]
    example = {"inputs": [[5.1, 3.5, 1.4, 0.2]]}
    document = openapi.document(model_dir(tmp_path, inputs, outputs, example=example), "digits", "1")
    validate(document)
    schemas = document["components"]["schemas"]
    assert schemas["Row"]["type"] == "array" and schemas["Row"]["items"]["type"] == "number"
    assert schemas["Predictions"]["properties"]["predictions"]["items"]["type"] == "integer"
    assert accepts(document, {"instances": [[1.0, 2.0, 3.0, 4.0]]})
    assert accepts(document, {"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    assert not accepts(document, {"instances": [["a", "b", "c", "d"]]})
    # An example that is not a table is kept as it was stored, under its own name.
    examples = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    assert examples["examples"] == {"stored": {"summary": "the model's input example", "value": example}}


def test_named_tensors_are_properties_of_a_row(tmp_path):
    inputs = [
        {"type": "tensor", "name": "image", "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2]}},
        {"type": "tensor", "name": "mask", "tensor-spec": {"dtype": "bool", "shape": [-1]}},
    ]
    document = openapi.document(model_dir(tmp_path, inputs), "seg", "2")
    validate(document)
    row = document["components"]["schemas"]["Row"]
    assert row["properties"]["image"] == {
        "type": "array",
        "items": {"type": "array", "items": {"type": "integer", "format": "int64"}},
    }
    assert row["properties"]["mask"] == {"type": "boolean"}


def test_arrays_objects_and_maps(tmp_path):
    """The nested column types of MLflow's signatures (what GenAI models log)."""
    inputs = [
        {"type": "array", "items": {"type": "string"}, "name": "tags", "required": True},
        {
            "type": "object",
            "name": "message",
            "required": True,
            "properties": {
                "role": {"type": "string", "required": True},
                "content": {"type": "string", "required": False},
            },
        },
        {"type": "map", "values": {"type": "double"}, "name": "weights", "required": True},
    ]
    document = openapi.document(
        model_dir(tmp_path, inputs, [{"type": "string", "required": True}]), "chat", "1"
    )
    validate(document)
    good = {"tags": ["a"], "message": {"role": "user"}, "weights": {"x": 1.0}}
    assert accepts(document, {"dataframe_records": [good]})
    assert not accepts(document, {"dataframe_records": [{**good, "tags": "a"}]})
    assert not accepts(document, {"dataframe_records": [{**good, "message": {"content": "hi"}}]})
    assert not accepts(document, {"dataframe_records": [{**good, "weights": {"x": "heavy"}}]})


@pytest.mark.parametrize(
    "stored",
    [
        {"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]},
        {"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]},
        {"inputs": {"a": [1, 2], "b": ["x", "y"]}},
    ],
)
def test_an_example_stored_in_any_table_format_gives_all_four(tmp_path, stored):
    inputs = [
        {"type": "long", "name": "a", "required": True},
        {"type": "string", "name": "b", "required": True},
    ]
    document = openapi.document(model_dir(tmp_path, inputs, example=stored), "m", "1")
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    examples = content["application/json"]["examples"]
    assert examples["dataframe_split"]["value"] == {
        "dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}
    }
    assert all(accepts(document, e["value"]) for e in examples.values())
    assert content["text/csv"]["example"] == "a,b\n1,x\n2,y\n"


def test_a_model_without_signature_or_example(tmp_path):
    document = openapi.document(model_dir(tmp_path), "plain", "7")
    validate(document)
    schemas = document["components"]["schemas"]
    assert "does not check" in schemas["Row"]["description"]
    assert schemas["Params"]["maxProperties"] == 0
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert "examples" not in content["application/json"] and "example" not in content["text/csv"]
    assert accepts(document, {"dataframe_records": [{"anything": 1}]})
    assert not accepts(document, {"dataframe_records": [{"anything": 1}], "params": {"p": 1}})


def test_the_document_names_the_gateways_api_key_unless_keys_are_off(tmp_path):
    """Behind the gateway (keys on) /invocations asks for a key, given as a bearer token or
    X-API-Key, and may answer 401/403; /ping needs none. With keys off (the document the
    gateway serves then) neither the scheme nor those answers are there. Both are valid."""
    directory = model_dir(tmp_path, inputs=[{"type": "double", "name": c} for c in IRIS])
    on = openapi.document(directory, "iris", "1")
    off = openapi.document(directory, "iris", "1", keys=False)
    for document in (on, off):
        validate(document)
    schemes = on["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["apiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    invocations = on["paths"]["/invocations"]["post"]
    assert invocations["security"] == [{"apiKey": []}, {"apiKeyHeader": []}]
    assert {"401", "403", "413", "429"} <= set(invocations["responses"])
    assert on["paths"]["/ping"]["get"]["security"] == []
    assert "securitySchemes" not in off["components"]
    assert "security" not in off["paths"]["/invocations"]["post"]
    assert not {"401", "403"} & set(off["paths"]["/invocations"]["post"]["responses"])
    assert {"413", "429"} <= set(off["paths"]["/invocations"]["post"]["responses"])
