# Serving registered models as Docker containers (serving/README.md). Included by the Makefile,
# whose PROJECT, COMPOSE and PIP_INDEX_URL it uses. MODEL and PORT: when not given, `serve`
# uses models:/diabetes-regressor@champion on 5001, and serve-stop/-logs every model / the only one.
# The settings reach serve.sh as its environment (exported for these targets only), never spliced
# into the recipe's shell text, where a quote or a backtick in a value would run as a command.
SERVE_TARGETS := serve serve-stop serve-logs serve-ps serve-key serve-keys serve-key-revoke
$(SERVE_TARGETS): export PROJECT ?=
$(SERVE_TARGETS): export COMPOSE ?=
$(SERVE_TARGETS): export MODEL ?=
$(SERVE_TARGETS): export PORT ?=
$(SERVE_TARGETS): export WORKERS ?=
$(SERVE_TARGETS): export REPLICAS ?=
$(SERVE_TARGETS): export BIND_ADDRESS ?=
$(SERVE_TARGETS): export SERVE_TIMEOUT ?=
$(SERVE_TARGETS): export MEMORY ?=
$(SERVE_TARGETS): export PIDS ?=
$(SERVE_TARGETS): export REBUILD ?=
$(SERVE_TARGETS): export ENV_FILE ?=
$(SERVE_TARGETS): export NAME ?=
$(SERVE_TARGETS): export WORKBENCH_SERVING_KEYS ?=
$(SERVE_TARGETS): export RATE_LIMIT ?=
$(SERVE_TARGETS): export BODY_LIMIT ?=

.PHONY: $(SERVE_TARGETS)
serve: ## serve a registered model behind its gateway (again: a rolling update): MODEL=models:/diabetes-regressor@champion PORT=5001 [REPLICAS=1] [WORKERS=2] [MEMORY=2g] [PIDS=512] [RATE_LIMIT=1000] [BODY_LIMIT=10m]
	@serving/serve.sh serve

serve-stop: ## remove served model containers: all of the project, or PORT= / MODEL=
	@serving/serve.sh stop

serve-logs: ## follow a served model's logs (PORT= when several are served)
	@FOLLOW=1 serving/serve.sh logs

serve-ps: ## list the served models, their health and ports
	@serving/serve.sh ps

serve-key: ## issue an API key for the served models, printed once: NAME=alice [MODEL=<registered model name>]
	@serving/serve.sh key

serve-keys: ## list the API keys: name, model, created, requests and errors counted by the running gateways
	@serving/serve.sh keys

serve-key-revoke: ## revoke an API key, at once in every running gateway: NAME=alice
	@serving/serve.sh key-revoke
