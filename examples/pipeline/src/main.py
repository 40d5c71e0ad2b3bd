"""Entry point `main`: train -> evaluate -> register, each step a child run of this one.

Each step runs through `mlflow.run(...)` (as `mlflow run -e <step>` would): MLflow creates its
run as a child of the active run (tag mlflow.parentRunId). Steps hand artifacts to the next one
by run id: evaluate downloads train's `data/test.csv` and `model`; register reads evaluate's
`evaluation.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow

PROJECT = str(Path(__file__).resolve().parents[1])


def step(entry_point: str, parameters: dict, experiment_id: str) -> str:
    submitted = mlflow.run(
        PROJECT,
        entry_point=entry_point,
        parameters=parameters,
        env_manager="local",
        experiment_id=experiment_id,
        run_name=entry_point,
    )
    return submitted.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--model-name", default="pipeline-diabetes")
    parser.add_argument("--min-r2", type=float, default=0.3)
    args = parser.parse_args(argv)

    with mlflow.start_run() as run:
        experiment_id = run.info.experiment_id
        mlflow.log_params(vars(args))
        train_id = step("train", {"alpha": args.alpha, "test_size": args.test_size}, experiment_id)
        evaluate_id = step("evaluate", {"train_run_id": train_id}, experiment_id)
        register_id = step(
            "register",
            {
                "train_run_id": train_id,
                "evaluate_run_id": evaluate_id,
                "model_name": args.model_name,
                "min_r2": args.min_r2,
            },
            experiment_id,
        )
        mlflow.set_tags(
            {"train_run_id": train_id, "evaluate_run_id": evaluate_id, "register_run_id": register_id}
        )
        evaluation = mlflow.get_run(evaluate_id).data.metrics
        mlflow.log_metrics(evaluation)
        print(f"pipeline done: train {train_id}, evaluate {evaluate_id}, register {register_id}")


if __name__ == "__main__":
    main()
