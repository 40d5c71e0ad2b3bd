"""Score a CSV or Parquet file with a registered model (run by scoring/score.sh in the scoring
container, on the workbench's frontend network; scoring/README.md).

    score.py --model <model URI> --input /path/in.csv|.parquet --output /path/out.csv|.parquet
             [--write-in DIR: write the output there, under its name, not at --output]
             [--id COLUMN] [--engine pandas|spark] [--master local[2]] [--chunk 10000]
             [--conf spark.key=value ...]

Reads `password=<the MLflow admin password>` from stdin (never on a command line or in
`docker inspect`). Steps:

1. resolve the model URI (any MLflow loads: models:/<name>/<version>, models:/<name>/<stage>,
   models:/<name>/latest, models:/<name>@<alias>, models:/<model_id>, runs:/<run_id>/<path>)
   once, on the workbench's server (MLFLOW_TRACKING_URI), to what it names now (an alias, stage
   or `latest` to its version number), and download exactly that once;
2. check the input against the model before any work: the file's columns (its header, or its
   Parquet schema) must hold every column the model's signature requires, and the ID column;
3. score it, chunk by chunk, printing the rows done / total after each chunk:
   - pandas: `mlflow.pyfunc.load_model(...).predict` on chunks of --chunk rows;
   - spark: `mlflow.pyfunc.spark_udf(spark, model, env_manager="local", result_type=...)` on a
     Spark DataFrame read from the file (--master: local[N], or spark://host:7077 for a cluster);
     each Spark partition is a chunk (about --chunk rows: the input is split by bytes);
4. write the ID column and the predictions, in input order, to a temporary file next to the
   output (in --write-in when given), renamed to the output at the end (a failed run leaves no
   partial output).

IDs: --id if given, else the input's `id` column if it has one, else the row's position in the
input (`row`, from 0). A CSV's IDs are copied as text, exactly as written; Parquet's keep their
type. Predictions: one column `prediction`, or one column per output of a model whose signature
names several.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from model_tools import Failure, ResolvedModel, one_line, read_stdin, resolve, say

FORMATS = (".csv", ".parquet")
ROW_COLUMN = "row"
# pyspark 4.3 warns at import and in every Python worker that it "does not yet fully support
# pandas >= 3.0.0"; pandas 3.1.1 is jupyter's version (the scoring image must load models with
# the libraries they were logged with), and tests/scoring checks Spark's predictions against the
# in-process ones row by row. Set before Spark starts, so its Python workers inherit it.
PANDAS_WARNING = "ignore:PySpark does not yet fully support pandas:FutureWarning"


def file_format(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise Failure(
            f"{what}={path}: unknown extension {path.suffix or '(none)'!r}; give a .csv or .parquet file"
        )
    return suffix[1:]


# ---- the model ------------------------------------------------------------------------------


def download(model: ResolvedModel, into: Path) -> Path:
    """The resolved model's files (its pinned URI: what was resolved is what is scored)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=str(into)))
    except MlflowException as exc:
        raise Failure(f"downloading {model.uri} failed: {one_line(exc.message)}") from None


class ModelInputs:
    """What the model's signature asks of the input file."""

    def __init__(self, model_dir: Path):
        from mlflow.models import Model

        meta = Model.load(str(model_dir / "MLmodel"))
        self.signature = meta.signature
        inputs = meta.get_input_schema()
        self.outputs = meta.get_output_schema()
        # Column-based signatures name their inputs; without names (none, or tensors) the model
        # gets every column of the file but the ID, in the file's order.
        self.named = inputs is not None and inputs.has_input_names() and not inputs.is_tensor_spec()
        self.required = inputs.required_input_names() if self.named else []
        self.optional = inputs.optional_input_names() if self.named else []
        self.types = {c.name: c.type for c in inputs.inputs} if self.named else {}

    def columns(self, available: list[str], id_column: str | None) -> list[str]:
        if not self.named:
            return [c for c in available if c != id_column]
        return self.required + [c for c in self.optional if c in available]

    def describe(self) -> str:
        if not self.named:
            return "no column signature: every column but the ID is passed to the model"
        return f"signature inputs: {', '.join(self.required + self.optional)}"

    def pandas_dtypes(self, columns: list[str]) -> tuple[dict, list[str]]:
        """read_csv dtypes (and date columns) for the model's columns, from the signature."""
        from mlflow.types.schema import DataType

        dtypes, dates = {}, []
        for column in columns:
            kind = self.types.get(column)
            if kind == DataType.datetime:
                dates.append(column)
            elif isinstance(kind, DataType) and kind != DataType.binary:
                dtypes[column] = kind.to_pandas()
        return dtypes, dates

    def spark_type(self, column: str):
        from mlflow.types.schema import DataType
        from pyspark.sql.types import StringType

        kind = self.types.get(column)
        if isinstance(kind, DataType) and kind != DataType.binary:
            return kind.to_spark()
        return StringType()

    def result_type(self) -> tuple[str | None, list[str]]:
        """spark_udf's result_type, from the signature's outputs, and the names of the output
        columns when there are several. One prediction per row (a column, or a tensor of shape
        (-1,): what scikit-learn's and XGBoost's predict return) -> its type; several named
        columns -> a struct of them; a (-1, k) tensor -> an array of k, split into k columns.
        No output schema: double (MLflow's own default)."""
        from mlflow.types.schema import ColSpec, DataType, TensorSpec

        specs = self.outputs.inputs if self.outputs is not None else []
        if not specs:
            return "double", []

        def spark_type(spec) -> str | None:
            if isinstance(spec, ColSpec) and isinstance(spec.type, DataType):
                return spec.type.to_spark().simpleString()
            if isinstance(spec, TensorSpec) and len(spec.shape) in (1, 2):
                kind = DataType.from_numpy_type(spec.type)
                if kind is not None:
                    name = kind.to_spark().simpleString()
                    return name if len(spec.shape) == 1 else f"array<{name}>"
            return None

        types = [spark_type(s) for s in specs]
        if None in types:
            raise Failure(
                f"ENGINE=spark: the model's outputs ({self.outputs}) are not columns "
                "or 1-D/2-D tensors of numbers, strings or booleans; use ENGINE=pandas"
            )
        if len(specs) == 1:
            spec = specs[0]
            if isinstance(spec, TensorSpec) and len(spec.shape) == 2 and spec.shape[1] > 0:
                return types[0], [f"prediction_{i}" for i in range(spec.shape[1])]
            return types[0], []
        names = [s.name or str(i) for i, s in enumerate(specs)]
        return ", ".join(f"`{n}` {t}" for n, t in zip(names, types, strict=False)), names

    def output_names(self) -> list[str] | None:
        specs = self.outputs.inputs if self.outputs is not None else []
        if len(specs) > 1:
            return [s.name or str(i) for i, s in enumerate(specs)]
        return None


# ---- the input ------------------------------------------------------------------------------


def header_of(path: Path, fmt: str) -> list[str]:
    try:
        if fmt == "parquet":
            return list(pq.ParquetFile(path).schema_arrow.names)
        with path.open(newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error, pa.ArrowException) as exc:
        raise Failure(f"INPUT={path} cannot be read as {fmt.upper()}: {exc}") from None


def count_rows(path: Path, fmt: str, first_column: str) -> int:
    """Rows in the input (for the progress figures): Parquet's metadata; a CSV's rows through
    pyarrow's multi-threaded reader (quoted newlines counted right), one column only."""
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    try:
        reader = pacsv.open_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[first_column], column_types={first_column: pa.string()}
            ),
        )
        return sum(batch.num_rows for batch in reader)
    except pa.ArrowException as exc:
        raise Failure(f"INPUT={path} cannot be read as CSV: {exc}") from None


def choose_id(header: list[str], wanted: str | None, path: Path) -> str | None:
    if wanted:
        if wanted not in header:
            raise Failure(f"ID={wanted}: {path} has no column {wanted!r}; its columns: {', '.join(header)}")
        return wanted
    return "id" if "id" in header else None


# ---- the output -----------------------------------------------------------------------------


class Output:
    """The output file, written chunk by chunk to a temporary file next to it, renamed at the
    end: a CSV with a header line (floats as Python writes them: they read back exactly), or a
    Parquet file with one row group per chunk."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.writer = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(self.tmp, mode="a", header=self.rows == 0, index=False)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.tmp, table.schema)
            self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(frame)

    def commit(self, columns: list[str]) -> None:
        if self.rows == 0:  # an input with a header and no rows: an output with a header
            self.write(pd.DataFrame({c: [] for c in columns}))
        if self.writer is not None:
            self.writer.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


class Progress:
    def __init__(self, total: int):
        self.total, self.started = total, time.monotonic()

    def show(self, done: int, chunk: str | None = None) -> None:
        pct = 100 * done / self.total if self.total else 100
        label = f"chunk {chunk}: " if chunk is not None else ""
        say(
            f"{label}{done:,} / {self.total:,} rows scored ({pct:.0f} %, "
            f"{time.monotonic() - self.started:.1f} s)"
        )


def prediction_frame(predictions, names: list[str] | None) -> pd.DataFrame:
    """The model's output as columns: `prediction`, or one per named output."""
    if isinstance(predictions, pd.DataFrame):
        if predictions.shape[1] == 1:
            return pd.DataFrame({"prediction": predictions.iloc[:, 0].to_numpy()})
        return predictions.reset_index(drop=True)
    if isinstance(predictions, pd.Series):
        return pd.DataFrame({"prediction": predictions.to_numpy()})
    if isinstance(predictions, dict):
        return pd.DataFrame(predictions)
    values = np.asarray(predictions)
    if values.ndim == 1:
        return pd.DataFrame({"prediction": values})
    if values.ndim == 2:
        columns = (
            names
            if names and len(names) == values.shape[1]
            else [f"prediction_{i}" for i in range(values.shape[1])]
        )
        return pd.DataFrame(values, columns=columns)
    return pd.DataFrame({"prediction": list(values)})


# ---- pandas ---------------------------------------------------------------------------------


def score_pandas(
    args,
    model_dir: Path,
    inputs: ModelInputs,
    fmt: str,
    id_column: str | None,
    columns: list[str],
    total: int,
    out: Output,
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(model_dir))
    names = inputs.output_names()
    progress = Progress(total)
    read = list(dict.fromkeys(([id_column] if id_column else []) + columns))
    if fmt == "csv":
        dtypes, dates = inputs.pandas_dtypes(columns)
        if id_column and id_column not in columns:
            dtypes[id_column] = str  # the IDs exactly as written
        # Numbers: pandas 3.1 parses every float with one correctly rounded converter (its
        # float_precision choice is gone), so a float written as its shortest repr reads back as
        # the very same double; Spark's parser (Java's Double.parseDouble) is exact too.
        chunks = pd.read_csv(
            args.input, usecols=read, dtype=dtypes, parse_dates=dates or False, chunksize=args.chunk
        )
    else:
        parquet = pq.ParquetFile(args.input)
        chunks = (batch.to_pandas() for batch in parquet.iter_batches(batch_size=args.chunk, columns=read))
    done = 0
    for number, chunk in enumerate(_guarded(chunks, args.input), start=1):
        try:
            predictions = model.predict(chunk[columns])
        except MlflowException as exc:
            raise Failure(
                f"the model refused rows {done}-{done + len(chunk) - 1} of {args.input}: {exc.message}"
            ) from None
        frame = prediction_frame(predictions, names)
        if len(frame) != len(chunk):
            raise Failure(f"the model returned {len(frame)} predictions for {len(chunk)} rows")
        ids = (
            chunk[id_column].reset_index(drop=True)
            if id_column
            else pd.Series(range(done, done + len(chunk)), name=ROW_COLUMN)
        )
        out.write(pd.concat([ids.rename(id_column or ROW_COLUMN), frame], axis=1))
        done += len(chunk)
        progress.show(done, f"{number}/{max(1, math.ceil(total / args.chunk))}")


def _guarded(chunks, path):
    """The chunks of a reader, with its parse errors as Failures (bad values in a column)."""
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except (ValueError, TypeError, pa.ArrowException) as exc:
            raise Failure(f"INPUT={path}: {str(exc).splitlines()[0]}") from None
        yield chunk


# ---- Spark ----------------------------------------------------------------------------------


def spark_session(args, input_bytes: int, total: int):
    from pyspark.sql import SparkSession

    # Chunks: the input is split into partitions of about --chunk rows (by bytes: Spark splits
    # CSV files at line ends, Parquet at row groups), one Spark task each.
    chunks = max(1, math.ceil(total / args.chunk))
    split = max(64 * 1024, math.ceil(input_bytes / chunks))
    builder = (
        SparkSession.builder.master(args.master)
        .appName("workbench-score")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.files.maxPartitionBytes", str(split))
        .config("spark.sql.files.openCostInBytes", str(split))
        # The pandas batches the model sees: at most a chunk, as with ENGINE=pandas.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.chunk))
    )
    if args.master.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep:
            raise Failure(f"--conf {item!r}: give spark.key=value")
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_error(exc: Exception) -> str:
    """The readable part of an error from a Spark job: the Python exception of a failed task
    (e.g. MLflow's schema check), else Spark's own message with its root cause."""
    text = str(exc)
    if "Traceback (most recent call last)" in text:
        tail = text.rsplit("Traceback (most recent call last)", 1)[1]
        raised = re.findall(r"^(?:\w+\.)*\w+: .+$", tail, re.M)
        if raised:
            return raised[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = next(
        (line.lstrip(": ") for line in lines if re.match(r"^:?\s*[\w.$]+(?:Exception|Error): ", line)),
        lines[0],
    )
    causes = [line[len("Caused by: ") :] for line in lines if line.startswith("Caused by: ")]
    if causes and causes[-1] not in first:
        first += f" (caused by {causes[-1]})"
    return first[:2000]


def score_spark(
    args,
    model_dir: Path,
    inputs: ModelInputs,
    fmt: str,
    header: list[str],
    id_column: str | None,
    columns: list[str],
    total: int,
    out: Output,
) -> None:
    os.environ["PYTHONWARNINGS"] = PANDAS_WARNING
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    import mlflow
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    started = time.monotonic()
    spark = spark_session(args, args.input.stat().st_size, total)
    say(f"Spark {spark.version} on {args.master} ({time.monotonic() - started:.0f} s to start)")
    staging = args.target.parent / f".{args.target.name}.{uuid.uuid4().hex[:8]}.parts"
    try:
        if fmt == "csv":
            # Every column typed up front (the model's from its signature, the others as text,
            # the IDs exactly as written); FAILFAST: a value that does not parse stops the job
            # with its row, instead of becoming a null the model would score.
            schema = StructType(
                [StructField(c, inputs.spark_type(c) if c in columns else StringType()) for c in header]
            )
            frame = spark.read.csv(
                str(args.input), header=True, schema=schema, mode="FAILFAST", escape='"', enforceSchema=True
            )
        else:
            frame = spark.read.parquet(str(args.input))
        keep = list(dict.fromkeys(([id_column] if id_column else []) + columns))
        frame = frame.select(*[F.col(f"`{c}`") for c in keep])

        # Rows per partition, in one pass: the progress total, and the offsets that number the
        # rows when there is no ID column (partition order is file order).
        counts = dict(frame.groupBy(F.spark_partition_id().alias("p")).count().collect())
        partitions = frame.rdd.getNumPartitions()
        total = sum(counts.values())
        say(f"{total:,} rows in {partitions} chunk(s) (Spark partitions)")
        if id_column is None:
            offsets, at = [], 0
            for p in range(partitions):
                offsets.append(at)
                at += counts.get(p, 0)
            pid = F.spark_partition_id()
            # monotonically_increasing_id(): the partition in the upper 31 bits, the record's
            # number within the partition in the lower 33.
            within = F.monotonically_increasing_id() - pid.cast("long") * (1 << 33)
            frame = frame.withColumn(
                ROW_COLUMN, F.element_at(F.array(*[F.lit(o).cast("long") for o in offsets]), pid + 1) + within
            )
            id_out = ROW_COLUMN
        else:
            id_out = id_column

        result_type, names = inputs.result_type()
        say(f"mlflow.pyfunc.spark_udf(spark, model, env_manager='local', result_type={result_type!r})")
        predict = mlflow.pyfunc.spark_udf(spark, str(model_dir), env_manager="local", result_type=result_type)
        scored = frame.select(
            F.col(f"`{id_out}`"), predict(F.struct(*[F.col(f"`{c}`") for c in columns])).alias("prediction")
        )
        if names:  # several outputs (a struct) or a (-1, k) tensor (an array): one column each
            kind = scored.schema["prediction"].dataType
            parts = (
                [F.col("prediction").getField(n) for n in names]
                if isinstance(kind, StructType)
                else [F.col("prediction")[i] for i in range(len(names))]
            )
            scored = scored.select(
                F.col(f"`{id_out}`"), *[part.alias(n) for part, n in zip(parts, names, strict=False)]
            )

        # Progress: every finished chunk adds its rows (and itself) to accumulators, which reach
        # the driver when its task ends. The pass-through costs one more trip of the (ID,
        # prediction) columns through Arrow to a Python worker and back; the batches go on
        # unchanged.
        rows_done = spark.sparkContext.accumulator(0)
        chunks_done = spark.sparkContext.accumulator(0)

        def counted(batches):
            for batch in batches:
                rows_done.add(len(batch))
                yield batch
            chunks_done.add(1)

        scored = scored.mapInPandas(counted, schema=scored.schema)
        progress = Progress(total)
        shown = [0]  # chunks reported so far
        stop = threading.Event()

        def report():
            while True:
                finished = stop.wait(0.5)
                if chunks_done.value != shown[0]:
                    shown[0] = chunks_done.value
                    progress.show(rows_done.value, f"{shown[0]}/{partitions}")
                if finished:
                    return

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            scored.write.mode("overwrite").parquet(str(staging))
        finally:
            stop.set()
            reporter.join()

        # The parts, in partition order (= input order), into the one output file.
        parts = sorted(staging.glob("part-*.parquet"))
        for part in parts:
            table = pq.read_table(part)
            if table.num_rows:
                out.write(table.to_pandas())
    except (PySparkException, Py4JError) as exc:
        raise Failure(f"the Spark job failed: {spark_error(exc)}") from None
    finally:
        spark.stop()  # first: the tasks of a cancelled job (Ctrl-C) may still be writing parts
        shutil.rmtree(staging, ignore_errors=True)


# ---- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    # The one directory the container may write (score.sh's, next to OUTPUT): the file is written
    # there under OUTPUT's name, and score.sh moves it to OUTPUT when this succeeded.
    parser.add_argument("--write-in", type=Path)
    parser.add_argument("--id", default="")
    parser.add_argument("--engine", choices=["pandas", "spark"], default="pandas")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--chunk", type=int, default=10000)
    parser.add_argument("--conf", action="append", default=[])
    args = parser.parse_args()
    args.target = args.write_in / args.output.name if args.write_in else args.output
    started = time.monotonic()

    in_fmt = file_format(args.input, "INPUT")
    out_fmt = file_format(args.output, "OUTPUT")
    if not args.input.is_file():
        raise Failure(f"INPUT={args.input}: no such file")
    if args.chunk < 1:
        raise Failure(f"CHUNK={args.chunk}: give a positive number of rows")
    header = header_of(args.input, in_fmt)
    if not header:
        raise Failure(f"INPUT={args.input} has no columns (an empty file?)")
    id_column = choose_id(header, args.id, args.input)

    password = read_stdin().get("password", "")
    if not password:
        raise Failure("no MLflow password on stdin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    model = resolve(args.model)
    say(f"{args.model} is {model.what} ({model.source})")

    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        model_dir = download(model, Path(tmp))
        inputs = ModelInputs(model_dir)
        columns = inputs.columns(header, id_column)
        missing = [c for c in inputs.required if c not in header]
        if missing:
            raise Failure(
                f"INPUT={args.input} lacks column(s) the model's signature requires: "
                f"{', '.join(missing)} ({inputs.describe()})"
            )
        if not columns:
            raise Failure(f"INPUT={args.input} has no column to score besides the ID {id_column!r}")
        total = count_rows(args.input, in_fmt, header[0])
        say(
            f"{args.input}: {total:,} rows; ID column: "
            f"{id_column or f'none, the row number ({ROW_COLUMN!r}, from 0)'}; "
            f"{len(columns)} column(s) to the model"
        )
        out = Output(args.target, out_fmt)
        try:
            if args.engine == "pandas":
                score_pandas(args, model_dir, inputs, in_fmt, id_column, columns, total, out)
            else:
                score_spark(args, model_dir, inputs, in_fmt, header, id_column, columns, total, out)
            out.commit([id_column or ROW_COLUMN, "prediction"])
        except BaseException:
            out.discard()
            raise
    say(
        f"wrote {out.rows:,} predictions to {args.output} ({args.engine}, "
        f"{time.monotonic() - started:.1f} s in all)"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; no output written", file=sys.stderr, flush=True)
        sys.exit(130)
