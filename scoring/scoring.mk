# Batch scoring of a CSV or Parquet file with a registered model (scoring/README.md). Included by
# the Makefile, whose PROJECT, COMPOSE and PIP_INDEX_URL it uses. Empty settings take score.sh's
# defaults: MODEL models:/diabetes-regressor@champion, ENGINE pandas, MASTER local[2].
# The settings reach score.sh as its environment (exported for this target only), never spliced
# into the recipe's shell text, where a quote or a backtick in a value would run as a command.
score: export PROJECT ?=
score: export COMPOSE ?=
score: export MODEL ?=
score: export INPUT ?=
score: export OUTPUT ?=
score: export ID ?=
score: export ENGINE ?=
score: export MASTER ?=
score: export CHUNK ?=
score: export MEMORY ?=
score: export PIDS ?=
score: export SPARK_CONF ?=
score: export DRIVER_HOST ?=
score: export DRIVER_PORT ?=
score: export ENV_FILE ?=

.PHONY: score
score: ## score a file: INPUT=in.csv|.parquet OUTPUT=out.csv|.parquet [MODEL=models:/...] [ID=col] [ENGINE=pandas|spark]
	@scoring/score.sh
