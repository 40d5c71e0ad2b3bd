# Batch scoring of a CSV or Parquet file with a registered model (scoring/README.md). Included by
# the Makefile, whose PROJECT, COMPOSE and PIP_INDEX_URL it uses. Empty settings take score.sh's
# defaults: MODEL models:/diabetes-regressor@champion, ENGINE pandas, MASTER local[2].
SCORE := PROJECT="$(PROJECT)" COMPOSE="$(COMPOSE)" MODEL="$(MODEL)" INPUT="$(INPUT)" \
	OUTPUT="$(OUTPUT)" ID="$(ID)" ENGINE="$(ENGINE)" MASTER="$(MASTER)" CHUNK="$(CHUNK)" \
	MEMORY="$(MEMORY)" SPARK_CONF="$(SPARK_CONF)" DRIVER_HOST="$(DRIVER_HOST)" \
	DRIVER_PORT="$(DRIVER_PORT)" ENV_FILE="$(ENV_FILE)" scoring/score.sh

.PHONY: score
score: ## score a file: INPUT=in.csv|.parquet OUTPUT=out.csv|.parquet [MODEL=models:/...] [ID=col] [ENGINE=pandas|spark]
	@$(SCORE)
