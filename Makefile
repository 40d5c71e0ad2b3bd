# The MLOps workbench. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -Eeuo pipefail -c

COMPOSE ?= docker compose
PROJECT ?= workbench
# Settings from the command line reach recipes as environment only, never spliced into their
# shell text, where a quote or a backtick in a value would run as a command. COMPOSE is split
# into words by the shell (as the scripts do), never parsed as shell text.
export COMPOSE PROJECT
DC := $$COMPOSE -p "$$PROJECT"
# split_words,VAR,array: the environment variable VAR's words into the bash array `array`, split
# as a shell splits them (quotes group words) but never run. An unbalanced quote fails.
split_words = mapfile -d '' -t $(2) < <(python3 -c 'import os, shlex, sys; \
	sys.excepthook = lambda kind, error, tb: print(f"{sys.argv[1]}: {error}", file=sys.stderr); \
	sys.stdout.write("".join(word + "\0" for word in shlex.split(os.environ[sys.argv[1]])))' $(1)) \
	&& wait $$!
SERVICES := postgres ftpd mlflow-server jupyter portainer
# A PyPI mirror from your own pip configuration, if you have one, for the image builds.
PIP_INDEX_URL ?= $(shell python3 -m pip config get global.index-url 2>/dev/null || true)
export PIP_INDEX_URL

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target>\n\n"} \
		/^[a-zA-Z0-9_%\/-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: prerequisites
prerequisites:
	@scripts/check-prerequisites.sh

.env:
	@scripts/make-env.sh .env

.PHONY: ca-certificates
ca-certificates: ## copy this machine's extra CA certificates into the images' trust store
	@shopt -s nullglob; certs=(/usr/local/share/ca-certificates/*.crt); \
	if (($${#certs[@]})); then \
		echo "==> trusting $${#certs[@]} extra CA certificate(s) from /usr/local/share/ca-certificates"; \
		cp -u "$${certs[@]}" base/ca-certificates/; \
	fi

.PHONY: base-image
base-image: prerequisites ## make sure debian:bookworm-slim exists (pull, else bootstrap it from Debian's archive)
	@base/bootstrap-debian-image.sh debian:bookworm-slim

.PHONY: build
build: prerequisites .env ca-certificates base-image ## build the workbench's images
	@echo "==> building images"
	$(DC) build

# The services to start: all, but Portainer only where its image can be had (it says why not).
START_SERVICES = services="$$SERVICES"; scripts/portainer-image.sh || services="$${services/portainer/}"
up restore: export SERVICES ?=

.PHONY: up
up: build ## start the workbench and print its URLs
	@$(START_SERVICES); \
	echo "==> starting $$services (waits until all are healthy)"; \
	$(DC) up -d --wait --wait-timeout 300 $$services
	@scripts/print-urls.sh "$$PROJECT"

.PHONY: down
down: prerequisites ## stop the workbench (keeps every volume: runs, models, artifacts)
	@echo "==> stopping the workbench (volumes kept)"
	$(DC) down --remove-orphans

.PHONY: ps
ps: ## show the services and their health
	$(DC) ps -a

.PHONY: logs
logs: ## follow every service's logs
	$(DC) logs -f --tail=100

logs/% shell/%: export SERVICE = $*
logs/%: ## follow one service's logs, e.g. make logs/mlflow-server
	$(DC) logs -f --tail=100 "$$SERVICE"

shell/%: ## open a shell in a running service, e.g. make shell/jupyter
	$(DC) exec "$$SERVICE" bash

.PHONY: credentials
credentials: ## print the passwords you log in with
	@$(DC) run --rm --no-deps -T secrets-init workbench-secrets show

.PHONY: clean
clean: export FORCE ?=
clean: ## remove containers AND volumes (all runs, models, artifacts); asks, or FORCE=1
	@if [[ "$$FORCE" != 1 ]]; then \
		read -r -p "Delete the workbench's volumes (every run, model and artifact)? [y/N] " answer; \
		[[ "$$answer" == [yY]* ]] || { echo "kept everything"; exit 1; }; \
	fi
	@echo "==> removing containers and volumes of project $$PROJECT"
	$(DC) down --volumes --remove-orphans

.PHONY: backup
backup: prerequisites ## write backups/workbench-<time>.tar: databases, artifacts, secrets, manifest
	@WORKBENCH_COMPOSE="$$COMPOSE -p $$PROJECT" scripts/backup.sh backups

.PHONY: restore
restore: export FILE ?=
restore: build ## restore FILE=backups/workbench-<time>.tar into empty volumes (after make clean)
	@[[ -n "$$FILE" ]] || { echo "usage: make restore FILE=backups/workbench-<time>.tar" >&2; exit 2; }
	@$(START_SERVICES); \
	WORKBENCH_COMPOSE="$$COMPOSE -p $$PROJECT" scripts/restore.sh "$$FILE" $$services
	@scripts/print-urls.sh "$$PROJECT"

# MLflow's `mlflow gc` (mlflow-server/gc.py) in a one-shot container of the mlflow-server image:
# deleted runs and experiments lose their rows and their files for good. Its options reach it
# as environment only (target-specific export, then `-e NAME`), never through a shell.
.PHONY: gc
gc: export OLDER_THAN ?=
gc: export RUN_IDS ?=
gc: export EXPERIMENT_IDS ?=
gc: export LOGGED_MODEL_IDS ?=
gc: prerequisites ## purge deleted runs and experiments, rows and files [OLDER_THAN=30d RUN_IDS=… EXPERIMENT_IDS=… LOGGED_MODEL_IDS=…]
	@echo "==> mlflow gc (needs the workbench running: artifacts are deleted through mlflow-server)"
	@$(DC) run --rm --no-deps -T -e OLDER_THAN -e RUN_IDS -e EXPERIMENT_IDS -e LOGGED_MODEL_IDS \
		mlflow-migrate gc

.PHONY: bench
bench: up ## benchmark against the plain setup and the floors; writes bench/results/<date>.md
	@WORKBENCH_COMPOSE="$$COMPOSE -p $$PROJECT" bench/run.sh

.PHONY: test
test: export PYTEST_ARGS ?=
test: prerequisites ca-certificates base-image .venv ## run the test suite (brings up its own isolated stack)
	@echo "==> pytest $$PYTEST_ARGS (an isolated stack under its own project name; tests/README.md)"
	@$(call split_words,PYTEST_ARGS,args); .venv/bin/python -m pytest "$${args[@]}"

.PHONY: browser
browser: ## install Debian's Chromium for the browser tests (as root; without it they skip)
	bash .ci/install-browser.sh

.venv: tests/requirements.txt
	@echo "==> creating .venv for the tests"
	python3 -m venv .venv
	.venv/bin/pip install -q --require-hashes -r tests/requirements.txt
	@touch .venv

.PHONY: lock
lock: .venv ## re-pin the Python dependencies of every image (uv pip compile)
	@for service in ftpd mlflow-server; do \
		echo "==> locking $$service/requirements.txt"; \
		.venv/bin/uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
			--generate-hashes -o $$service/requirements.txt $$service/requirements.in; \
	done
	@echo "==> locking jupyter/requirements.txt (constrained by mlflow-server's)"
	@.venv/bin/uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
		--generate-hashes -c mlflow-server/requirements.txt -o jupyter/requirements.txt jupyter/requirements.in
	@echo "==> locking scoring/requirements.txt (constrained by jupyter's: models load with the libraries they were logged with)"
	@.venv/bin/uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
		--generate-hashes -c jupyter/requirements.txt -o scoring/requirements.txt scoring/requirements.in
	@echo "==> locking serving/requirements.txt (constrained by mlflow-server's: the same MLflow)"
	@.venv/bin/uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
		--generate-hashes -c mlflow-server/requirements.txt -o serving/requirements.txt serving/requirements.in

# Serving: make serve / serve-stop / serve-logs / serve-ps (serving/serving.mk).
-include serving/serving.mk
# Batch scoring: make score (scoring/scoring.mk).
-include scoring/scoring.mk

# ---- Notebooks, examples, exercises (in the running workbench's jupyter container) ----
EXAMPLE ?= elasticnet
ENTRY ?= $(if $(filter pipeline,$(EXAMPLE)),main,train)
PARAMS ?=
EXPERIMENT ?= $(EXAMPLE)

.PHONY: run-example
run-example: export EXAMPLE ?=
run-example: export ENTRY ?=
run-example: export PARAMS ?=
run-example: export EXPERIMENT ?=
run-example: ## mlflow run an example, e.g. make run-example EXAMPLE=elasticnet ENTRY=train PARAMS="-P alpha=0.3"
	@echo "==> mlflow run examples/$$EXAMPLE -e $$ENTRY --experiment-name $$EXPERIMENT $$PARAMS"
	@$(call split_words,PARAMS,params); \
	$(DC) exec -T jupyter mlflow run "examples/$$EXAMPLE" -e "$$ENTRY" --env-manager local \
		--experiment-name "$$EXPERIMENT" "$${params[@]}"

.PHONY: run-notebooks
run-notebooks: ## run every notebook in notebooks/ top to bottom (papermill; outputs to /tmp in the container)
	@for notebook in notebooks/[0-9][0-9]-*.ipynb; do \
		name=$$(basename "$$notebook"); \
		echo "==> $$name"; \
		$(DC) exec -T jupyter papermill --no-progress-bar "notebooks/$$name" "/tmp/$$name"; \
	done

.PHONY: exercise-check
exercise-check: .venv ## check your exercises/ notebooks against your running workbench
	@MLFLOW_TRACKING_URI="http://127.0.0.1:$${WORKBENCH_MLFLOW_PORT:-5000}" \
	MLFLOW_TRACKING_USERNAME=admin \
	WORKBENCH_SERVING_URL="$${WORKBENCH_SERVING_URL:-http://127.0.0.1:5002}" \
	MLFLOW_TRACKING_PASSWORD="$$($(DC) run --rm --no-deps -T secrets-init cat /secrets/mlflow-server/mlflow-admin-password)" \
		.venv/bin/python -m pytest -q --tb=line -p no:cacheprovider exercises/checks
