"""The OpenAPI 3.1 document of one served model, derived from its MLflow signature.

    openapi.py <model directory> <name> <version>   → the document on stdout (JSON)

MLflow's scoring server (FastAPI) documents `/invocations` as "any body": it parses the body
itself. This module writes what the body may be for *this* model: the four JSON formats of
MLflow 3's scoring protocol (`dataframe_split`, `dataframe_records`, `instances`, `inputs`) and
`text/csv`, each with the columns and types of the model's input signature, optional `params`
from its parameter schema, the answer's `predictions` from its output schema, and an example of
every format built from the model's input example (`serving_input_example.json`). model_image.py
puts the document into the image and nginx serves it at `/openapi.json` (serving/README.md).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import yaml

OPENAPI = "3.1.0"
# MLflow's column types (mlflow.types.DataType) as JSON Schema.
SCALARS = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
}
TENSOR_DTYPES = {
    "b": "boolean",
    "i": "long",
    "u": "long",
    "f": "double",
    "U": "string",
    "S": "binary",
    "O": "string",
}


def type_schema(spec: dict) -> dict:
    """JSON Schema of one MLflow type: a scalar, an array, an object or a map (recursively)."""
    kind = spec.get("type")
    if kind in SCALARS:
        return dict(SCALARS[kind])
    if kind == "array":
        return {"type": "array", "items": type_schema(spec["items"])}
    if kind == "object":
        props = spec.get("properties", {})
        return {
            "type": "object",
            "properties": {name: type_schema(p) for name, p in props.items()},
            "required": [name for name, p in props.items() if p.get("required", True)],
        }
    if kind == "map":
        return {"type": "object", "additionalProperties": type_schema(spec["values"])}
    if kind == "tensor":
        tensor = spec["tensor-spec"]
        dtype = tensor.get("dtype", "float64").lstrip("<>=|")
        schema = dict(SCALARS[TENSOR_DTYPES.get(dtype[:1], "double")])
        for _ in tensor.get("shape", [-1])[1:]:
            schema = {"type": "array", "items": schema}
        return schema
    return {"description": f"MLflow type {json.dumps(spec)}"}


def load_signature(model_dir: Path) -> dict[str, list | None]:
    """inputs / outputs / params of the MLmodel file, as lists of MLflow's JSON specs."""
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    signature = mlmodel.get("signature") or {}
    return {
        part: json.loads(signature[part]) if signature.get(part) else None
        for part in ("inputs", "outputs", "params")
    }


def load_example(model_dir: Path) -> dict | None:
    path = model_dir / "serving_input_example.json"
    return json.loads(path.read_text()) if path.is_file() else None


def example_frame(example: dict | None) -> tuple[list[str], list[list]] | None:
    """(columns, rows) of the input example, whatever format MLflow stored it in."""
    if not example:
        return None
    if isinstance(example.get("dataframe_split"), dict):
        split = example["dataframe_split"]
        return list(split["columns"]), [list(row) for row in split["data"]]
    records = example.get("dataframe_records") or example.get("instances")
    if isinstance(records, list) and records and all(isinstance(r, dict) for r in records):
        columns = list(records[0])
        return columns, [[r.get(c) for c in columns] for r in records]
    inputs = example.get("inputs")
    if isinstance(inputs, dict) and inputs and all(isinstance(v, list) for v in inputs.values()):
        columns = list(inputs)
        return columns, [list(row) for row in zip(*inputs.values(), strict=False)]
    return None


def format_examples(example: dict | None) -> dict[str, dict]:
    """One example request body per JSON format (and CSV), all the same rows."""
    frame = example_frame(example)
    params = {"params": example["params"]} if example and example.get("params") else {}
    if frame is None:
        return {"stored": {"summary": "the model's input example", "value": example}} if example else {}
    columns, rows = frame
    records = [dict(zip(columns, row, strict=False)) for row in rows]
    bodies = {
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": rows}},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {c: [row[i] for row in rows] for i, c in enumerate(columns)}},
    }
    return {
        fmt: {"summary": f"{len(rows)} row(s) as {fmt}", "value": {**body, **params}}
        for fmt, body in bodies.items()
    }


def csv_example(example: dict | None) -> str | None:
    frame = example_frame(example)
    if frame is None:
        return None
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(frame[0])
    writer.writerows(frame[1])
    return text.getvalue()


def input_schemas(inputs: list | None) -> dict[str, dict]:
    """Component schemas: Row (one record), Columns (column → values) and the four bodies."""
    if inputs and all(spec.get("type") == "tensor" for spec in inputs):
        # A tensor signature: rows are arrays (one unnamed tensor) or objects of named tensors.
        if len(inputs) == 1 and not inputs[0].get("name"):
            row = type_schema(inputs[0])
        else:
            row = {"type": "object", "properties": {s["name"]: type_schema(s) for s in inputs}}
    elif inputs:
        named = [spec for spec in inputs if spec.get("name")]
        row = {
            "type": "object",
            "properties": {spec["name"]: type_schema(spec) for spec in named},
            "required": [spec["name"] for spec in named if spec.get("required", True)],
        }
    else:
        row = {"description": "the model has no input signature: MLflow does not check the input"}
    columns = [spec["name"] for spec in (inputs or []) if spec.get("name")]
    props = row.get("properties", {})
    schemas = {
        "Row": {"title": "one input row", **row},
        "Columns": {
            "title": "the input by column",
            "type": "object",
            "properties": {c: {"type": "array", "items": props[c]} for c in columns},
            "required": row.get("required", []),
        }
        if columns
        else {"type": "object"},
    }
    split = {
        "type": "object",
        "required": ["columns", "data"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
            "index": {"type": "array"},
        },
    }
    if columns:
        split["properties"]["columns"]["items"]["enum"] = columns
        split["properties"]["columns"]["uniqueItems"] = True
        # Every required column must be among `columns` (in any order). None required (named
        # tensors, optional columns): no allOf, which must not be empty.
        if row.get("required"):
            split["properties"]["columns"]["allOf"] = [{"contains": {"const": c}} for c in row["required"]]
    schemas.update(
        {
            "DataframeSplit": body("dataframe_split", split, "pandas `to_dict(orient='split')`"),
            "DataframeRecords": body(
                "dataframe_records",
                {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
                "pandas `to_dict(orient='records')`",
            ),
            "Instances": body(
                "instances",
                {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
                "TensorFlow Serving's row format",
            ),
            "Inputs": body(
                "inputs",
                {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Columns"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
                    ]
                },
                "TensorFlow Serving's columnar format",
            ),
        }
    )
    return schemas


def body(key: str, schema: dict, what: str) -> dict:
    return {
        "title": key,
        "description": f"`{key}`: {what}",
        "type": "object",
        "required": [key],
        "properties": {key: schema, "params": {"$ref": "#/components/schemas/Params"}},
    }


def params_schema(params: list | None) -> dict:
    if not params:
        return {
            "type": "object",
            "description": "the model takes no inference parameters",
            "maxProperties": 0,
        }
    props = {}
    for spec in params:
        schema = type_schema({"type": spec.get("type", "string")})
        if spec.get("shape"):
            schema = {"type": "array", "items": schema}
        if "default" in spec:
            schema["default"] = spec["default"]
        props[spec["name"]] = schema
    return {"type": "object", "properties": props, "additionalProperties": False}


def output_schema(outputs: list | None) -> dict:
    """`predictions`: one value per row (one unnamed output) or one object per row."""
    if not outputs:
        item: dict = {"description": "whatever the model returns (it has no output signature)"}
    elif len(outputs) == 1 and not outputs[0].get("name"):
        item = type_schema(outputs[0])
    else:
        item = {
            "type": "object",
            "properties": {s.get("name", f"output_{i}"): type_schema(s) for i, s in enumerate(outputs)},
        }
    return {
        "type": "object",
        "required": ["predictions"],
        "properties": {"predictions": {"type": "array", "items": item}},
    }


# The gateway in front of the served model (serving/gateway/) takes the key either way.
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key of the workbench (make serve-key): Authorization: Bearer wbk_...",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document(model_dir: Path, name: str, version: str, keys: bool = True) -> dict:
    """The model's document; `keys`: its gateway asks for an API key (the bearer scheme, 401/403)."""
    signature = load_signature(model_dir)
    example = load_example(model_dir)
    examples = format_examples(example)
    csv_text = csv_example(example)
    schemas = input_schemas(signature["inputs"])
    schemas["Params"] = params_schema(signature["params"])
    schemas["Predictions"] = output_schema(signature["outputs"])
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error_code": {"type": "string", "examples": ["BAD_REQUEST", "INVALID_PARAMETER_VALUE"]},
            "message": {"type": "string"},
            "stack_trace": {"type": "string"},
        },
    }
    json_media: dict = {
        "schema": {
            "oneOf": [
                {"$ref": f"#/components/schemas/{k}"}
                for k in ("DataframeSplit", "DataframeRecords", "Instances", "Inputs")
            ]
        }
    }
    if examples:
        json_media["examples"] = examples
        json_media["example"] = next(iter(examples.values()))["value"]
    csv_media: dict = {
        "schema": {
            "type": "string",
            "description": "a header line with the column names, then one line per row",
        }
    }
    if csv_text:
        csv_media["example"] = csv_text
    columns = ", ".join(
        f"`{s['name']}` ({s.get('type')})" for s in signature["inputs"] or [] if s.get("name")
    )
    return {
        "openapi": OPENAPI,
        "info": {
            "title": f"MLflow model {name}, version {version}",
            "version": str(version),
            # Which registry entry this is, for clients (e.g. to compare with pyfunc.load_model).
            "x-mlflow-model": {"name": name, "version": str(version), "uri": f"models:/{name}/{version}"},
            "description": (
                f"Scoring endpoint of the registered model `{name}` version {version}, "
                "served by MLflow's scoring server (make serve). "
                + (f"Input columns: {columns}." if columns else "")
            ),
        },
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "score rows with the model",
                    "operationId": "invocations",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": json_media, "text/csv": csv_media},
                    },
                    "responses": {
                        "200": {
                            "description": "one prediction per input row",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}
                            },
                        },
                        "400": error_response(
                            "the body is not valid JSON/CSV, or does not fit the "
                            "model's signature (missing columns, wrong types)"
                        ),
                        "413": {
                            "description": "the body is larger than the gateway's BODY_LIMIT (10 MB by default)"
                        },
                        "415": error_response("a Content-Type other than application/json or text/csv"),
                        "429": {
                            "description": "over the rate limit of this key; try again after Retry-After seconds",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                        **(
                            {
                                "401": error_response("no API key, or one that is unknown or revoked"),
                                "403": error_response("the API key is for another model"),
                            }
                            if keys
                            else {}
                        ),
                    },
                    **({"security": [{"apiKey": []}, {"apiKeyHeader": []}]} if keys else {}),
                }
            },
            "/ping": {
                "get": {
                    "security": [],
                    "summary": "health: 200 once the model is loaded",
                    "operationId": "ping",
                    "responses": {"200": {"description": "the model is loaded"}},
                }
            },
        },
        "components": {"schemas": schemas, **({"securitySchemes": SECURITY_SCHEMES} if keys else {})},
    }


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(f"usage: {sys.argv[0]} <model directory> <name> <version>")
    json.dump(document(Path(sys.argv[1]), sys.argv[2], sys.argv[3]), sys.stdout, indent=1)
    print()
