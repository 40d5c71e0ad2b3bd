# The workbench on Docker Swarm (swarm/README.md). Included by the Makefile, whose COMPOSE and
# PIP_INDEX_URL it uses. STACK names the stack (workbench-swarm: not the Compose project's name,
# whose volumes would be the stack's). The settings reach swarm/deploy.sh as its environment.
STACK ?= workbench-swarm
DEPLOY_TARGETS := deploy deploy-serve deploy-ps deploy-rm
# STACK, not PROJECT: `build` (deploy's prerequisite) must build under the Compose project's name,
# whose label Compose gives the images (another name would rebuild every image under new ids).
$(DEPLOY_TARGETS): export STACK ?=
$(DEPLOY_TARGETS): export ENV_FILE ?=
$(DEPLOY_TARGETS): export MODEL ?=
$(DEPLOY_TARGETS): export PORT ?=
$(DEPLOY_TARGETS): export REPLICAS ?=
$(DEPLOY_TARGETS): export WORKERS ?=
$(DEPLOY_TARGETS): export MEMORY ?=
$(DEPLOY_TARGETS): export DEPLOY_TIMEOUT ?=
$(DEPLOY_TARGETS): export WORKBENCH_REGISTRY ?=
$(DEPLOY_TARGETS): export WORKBENCH_SERVING_KEYS ?=
$(DEPLOY_TARGETS): export RATE_LIMIT ?=
$(DEPLOY_TARGETS): export BODY_LIMIT ?=

.PHONY: swarm-init $(DEPLOY_TARGETS)
swarm-init: prerequisites ## make this engine a one-node Swarm manager (for more machines: swarm/README.md)
	@swarm/swarm-init.sh

deploy: build ## deploy the workbench to Docker Swarm, or update it: [STACK=workbench-swarm] [MLFLOW_SERVER_REPLICAS=2]
	@swarm/deploy.sh up

deploy-serve: ## serve a model on the swarm (again: a rolling update): MODEL=models:/<name>@<alias> PORT=5001 REPLICAS=2
	@swarm/deploy.sh serve

deploy-ps: ## list the swarm stack's services and replicas
	@swarm/deploy.sh ps

deploy-rm: ## remove the swarm stacks (volumes, secrets' files and the registry stay)
	@swarm/deploy.sh rm
