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
# A PyPI mirror from your own pip configuration, if you have one, for the image builds. Compose
# gives it to pip as a build secret (docker-compose.yml): any token in it stays out of the images.
PIP_INDEX_URL ?= $(shell python3 -m pip config get global.index-url 2>/dev/null || true)
export PIP_INDEX_URL
# The Debian image base/Dockerfile builds FROM: debian:bookworm-slim, or where that cannot be
# pulled the workbench's own bootstrap, workbench/debian-bootstrap:bookworm (base-image makes it).
# Looked up (never pulled) as each recipe runs, so after base-image; Compose reads it.
WORKBENCH_DEBIAN_IMAGE ?= $(shell base/bootstrap-debian-image.sh --print 2>/dev/null)
export WORKBENCH_DEBIAN_IMAGE

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
base-image: prerequisites ## the Debian image to build on: debian:bookworm-slim (pull), else bootstrap workbench/debian-bootstrap:bookworm
	@base/bootstrap-debian-image.sh >/dev/null

.PHONY: build
build: prerequisites .env ca-certificates base-image ## build the workbench's images
	@echo "==> building images"
	$(DC) build

# The services to start: all, but Portainer only where its image can be had (it says why not).
# With COMPOSE_PROFILES=team (team mode, docs/operations.md), the TLS gateway too: Compose says
# whether the profile is on (.env, or the environment).
START_SERVICES = services="$$SERVICES"; scripts/portainer-image.sh || services="$${services/portainer/}"; \
	if $(DC) config --services 2>/dev/null | grep -qx team-gateway; then services+=" team-gateway"; fi
up restore: export SERVICES ?=

# MLFLOW_SERVER_REPLICAS as Compose resolves it (.env, environment): refused before anything is
# built when the stack cannot run it (mlflow-server/README.md, Replicas).
.PHONY: check-replicas
check-replicas: prerequisites ## check MLFLOW_SERVER_REPLICAS and what it needs (make up runs it first)
	@scripts/check-replicas.sh

.PHONY: up
up: check-replicas build ## start the workbench and print its URLs
	@$(START_SERVICES); \
	echo "==> starting $$services (waits until all are healthy)"; \
	$(DC) up -d --wait --wait-timeout 300 $$services
	@scripts/print-urls.sh "$$PROJECT"

# Team mode's local CA (team-gateway/make-ca.sh) in a one-shot container of the base image, as
# your uid, into WORKBENCH_TEAM_CA_DIR (created here first, so that it is yours, not root's).
.PHONY: team-ca
team-ca: prerequisites ca-certificates base-image ## a local CA and the team gateway's certificate for WORKBENCH_PUBLIC_NAME, in team-gateway/local-ca/
	@$(DC) build -q secrets-init
	@dir="$$($(DC) --profile team-ca config --format json | python3 -c 'import json, sys; \
		print(next(v["source"] for v in json.load(sys.stdin)["services"]["team-ca"]["volumes"] if v["target"] == "/ca"))')"; \
	mkdir -p "$$dir"; \
	$(DC) --profile team-ca run --rm --no-deps --user "$$(id -u):$$(id -g)" team-ca; \
	if [[ -n "$$($(DC) ps -q team-gateway 2>/dev/null)" ]]; then \
		echo "==> recreating the running team-gateway with the new certificate"; \
		$(DC) up -d --no-deps --force-recreate --wait team-gateway; \
	fi; \
	echo "==> trust $$dir/ca.pem in your browser and clients (docs/operations.md, Team server behind TLS)"

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

# Encryption with age (scripts/backup-age.sh): the key files reach the scripts as environment.
.PHONY: backup
backup: export AGE_RECIPIENTS_FILE ?=
backup: prerequisites ## write backups/workbench-<time>.tar: databases, artifacts, secrets, manifest [AGE_RECIPIENTS_FILE=… encrypts it]
	@WORKBENCH_COMPOSE="$$COMPOSE -p $$PROJECT" scripts/backup.sh backups

.PHONY: restore
restore: export FILE ?=
restore: export AGE_IDENTITY_FILE ?=
restore: check-replicas build ## restore FILE=backups/workbench-<time>.tar[.age] into empty volumes (after make clean) [AGE_IDENTITY_FILE=…]
	@[[ -n "$$FILE" ]] || { echo "usage: make restore FILE=backups/workbench-<time>.tar [AGE_IDENTITY_FILE=key.txt]" >&2; exit 2; }
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

# The audit trail (mlflow-server/server-app/workbench_audit.py): every mutating call, newest
# last, read in a one-shot container of the mlflow-server image. Filters as environment only.
.PHONY: audit
audit: export WHO ?=
audit: export SINCE ?=
audit: export UNTIL ?=
audit: export ACTION ?=
audit: export STATUS ?=
audit: export TARGET ?=
audit: export LIMIT ?=
audit: prerequisites ## list the audit trail [WHO=user SINCE=2026-12-01 UNTIL=… ACTION=runs/delete STATUS=403 TARGET=<id> LIMIT=1000]
	@$(DC) run --rm --no-deps -T -e WHO -e SINCE -e UNTIL -e ACTION -e STATUS -e TARGET -e LIMIT \
		mlflow-migrate audit

.PHONY: bench
bench: build ## benchmark in a stack of its own (removed at the end); writes bench/results/<date>.md
	@WORKBENCH_COMPOSE="$$COMPOSE -p $$PROJECT" bench/run.sh

.PHONY: lint
lint: .venv ## ruff (lint and format), shellcheck, hadolint, compose-lint: .pre-commit-config.yaml over every file
	@echo "==> lint: the hooks of .pre-commit-config.yaml over every tracked file"
	@.venv/bin/pre-commit run --all-files || { \
		echo "==> make lint failed (above). Python: .venv/bin/ruff format && .venv/bin/ruff check --fix" \
			"fix most; the rest, and shellcheck's and hadolint's, by hand or annotated with the reason" >&2; \
		exit 1; }

.PHONY: test-unit
test-unit: .venv ## the pure logic, without Docker (seconds): tests/unit
	@echo "==> pytest tests/unit (no Docker, no stack)"
	@.venv/bin/python -m pytest -q --durations=5 tests/unit

# The unit tier runs first, on its own (a logic error fails in seconds, before any image is
# built); the stack's run then leaves it out.
.PHONY: test
test: export PYTEST_ARGS ?=
test: export TEST_PROCESSES ?= 2
test: test-unit prerequisites ca-certificates base-image .venv ## run the test suite: test-unit, then the rest in TEST_PROCESSES=2 processes, each on an isolated stack of its own
	@echo "==> pytest$${PYTEST_ARGS:+ $$PYTEST_ARGS} in $$TEST_PROCESSES processes (each an isolated stack under its own project name; tests/README.md)"
	@$(call split_words,PYTEST_ARGS,args); \
		.venv/bin/python -m pytest --ignore=tests/unit -n "$$TEST_PROCESSES" --dist loadfile "$${args[@]}"

.PHONY: browser
browser: ## install Debian's Chromium for the browser tests (as root; without it they skip)
	bash .ci/install-browser.sh

.venv: tests/requirements.txt
	@echo "==> creating .venv for the tests"
	python3 -m venv .venv
	.venv/bin/pip install -q --require-hashes -r tests/requirements.txt
	@touch .venv

.PHONY: lock
# lock_one,service[,constraints]: one image's requirements.in pinned, with hashes, into its
# requirements.txt for the images' Python (Debian 12's 3.11) and platform, whatever the host's;
# the constraints file keeps shared libraries at one version.
lock_one = echo "==> locking $(1)/requirements.txt$(if $(2), (constrained by $(2)))"; \
	.venv/bin/uv pip compile -q --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
		--generate-hashes $(if $(2),-c $(2)) -o $(1)/requirements.txt $(1)/requirements.in

# jupyter and serving's tools take the server's MLflow (its one pin: mlflow-server/README.md,
# "Upgrading MLflow"), SQLAlchemy, pandas...; scoring loads models with the libraries they were
# logged with in JupyterLab.
lock: .venv ## re-pin the Python dependencies of every image (uv pip compile)
	@$(call lock_one,ftpd)
	@$(call lock_one,mlflow-server)
	@$(call lock_one,jupyter,mlflow-server/requirements.txt)
	@$(call lock_one,scoring,jupyter/requirements.txt)
	@$(call lock_one,serving,mlflow-server/requirements.txt)

# Serving: make serve / serve-stop / serve-logs / serve-ps (serving/serving.mk).
-include serving/serving.mk
# Batch scoring: make score (scoring/scoring.mk).
-include scoring/scoring.mk
# Docker Swarm: make swarm-init / deploy / deploy-serve / deploy-ps / deploy-rm (swarm/swarm.mk).
-include swarm/swarm.mk

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

# The checks run in the jupyter container, with its tracking URI and credentials, never on the
# host: exercises/ is writable from JupyterLab, and pytest runs any conftest.py planted there.
# WORKBENCH_SERVING_URL: exercise 3's model as JupyterLab reaches it. EXERCISE_EXPERIMENT and
# EXERCISE_MODEL (exercises/checks/conftest.py) pass through when set.
.PHONY: exercise-check
exercise-check: ## check your exercises/ notebooks against your running workbench (in its jupyter container)
	@WORKBENCH_SERVING_URL="$${WORKBENCH_SERVING_URL:-http://serve-5002:8080}" \
		$(DC) exec -T -e WORKBENCH_SERVING_URL -e EXERCISE_EXPERIMENT -e EXERCISE_MODEL \
		-e PYTHONDONTWRITEBYTECODE=1 jupyter python3 -m pytest -q --tb=line -p no:cacheprovider exercises/checks
