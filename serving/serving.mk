# Serving registered models as Docker containers (serving/README.md). Included by the Makefile,
# whose PROJECT, COMPOSE and PIP_INDEX_URL it uses. MODEL and PORT: when not given, `serve`
# uses models:/diabetes-regressor@champion on 5001, and serve-stop/-logs every model / the only one.
SERVE := PROJECT="$(PROJECT)" COMPOSE="$(COMPOSE)" MODEL="$(MODEL)" PORT="$(PORT)" \
	WORKERS="$(WORKERS)" BIND_ADDRESS="$(BIND_ADDRESS)" SERVE_TIMEOUT="$(SERVE_TIMEOUT)" \
	REBUILD="$(REBUILD)" ENV_FILE="$(ENV_FILE)" serving/serve.sh

.PHONY: serve serve-stop serve-logs serve-ps
serve: ## serve a registered model: MODEL=models:/diabetes-regressor@champion PORT=5001 [WORKERS=2]
	@$(SERVE) serve

serve-stop: ## remove served model containers: all of the project, or PORT= / MODEL=
	@$(SERVE) stop

serve-logs: ## follow a served model's logs (PORT= when several are served)
	@FOLLOW=1 $(SERVE) logs

serve-ps: ## list the served models, their health and ports
	@$(SERVE) ps
