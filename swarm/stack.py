#!/usr/bin/env python3
"""The workbench as a Docker Swarm stack, rendered from docker-compose.yml (swarm/README.md).

  stack.py workbench  the workbench's stack file, from `docker compose config --format json`
                      on stdin (so .env's settings hold as they do for `make up`)
  stack.py serve      a served model's stack file: its replicas and their gateway
  stack.py secrets    create the Swarm secrets' files once, in SECRETS_DIR

Each prints JSON (YAML 1.2 is a superset of it: `docker stack deploy -c` reads it). Standard
library only: it runs on the manager's python3.

What `docker stack deploy` (Engine 20.10, compose file format 3.8) does not take from the Compose
file is converted here, and said on stderr when it changes behaviour:
  - images: pulled from the registry the nodes share (REGISTRY/<name>:<tag>), never built;
  - the secrets volumes of secrets-init: Swarm secrets instead, each mounted in
    /run/secrets/<name> for exactly the services base/bin/workbench-secrets gives it to, owned by
    that service's user, mode 0400 (the paths the services already read);
  - restart -> deploy.restart_policy, mem_limit -> deploy.resources, scale -> deploy.replicas;
  - depends_on: Swarm has no start order; a service whose dependency is not up yet exits and is
    restarted (restart_policy), as a container of `make up` would be;
  - ports: published by the `edge` gateway only, mode host (this kernel has no IPVS, so the
    routing mesh does not answer; machine notes section 7), every service endpoint_mode dnsrr;
  - tmpfs: Swarm's tmpfs mounts take no uid/gid: root's, with the mode of the image's folder
    (1777 where there is none; postgres/Dockerfile opens its socket folder so).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "3.8"
EDGE_CONFIG = ROOT / "swarm/edge.cfg"

# Who holds which secret, and as which user: the same table secrets-init uses for `make up`.
_loader = importlib.machinery.SourceFileLoader("workbench_secrets", str(ROOT / "base/bin/workbench-secrets"))
_spec = importlib.util.spec_from_loader("workbench_secrets", _loader)
workbench_secrets = importlib.util.module_from_spec(_spec)
_loader.exec_module(workbench_secrets)
OWNERS: dict[str, tuple[int, int]] = workbench_secrets.OWNERS
USERS: dict[str, list[str]] = workbench_secrets.USERS

# The services of the stack: secrets-init's work is Swarm's (secrets), team-gateway's the edge's,
# team-ca makes files on the host.
LEFT_OUT = {"secrets-init", "team-gateway", "team-ca"}
# Where the state lives (named volumes are per node) or a host folder is mounted: on a manager,
# the node `make deploy` runs on (swarm/README.md, "More than one machine").
ON_A_MANAGER = {"postgres", "ftpd", "jupyter", "portainer", "edge"}
# Compose's, not Swarm's (Engine 20.10): start order (tasks restart instead), and the settings
# its services have no field for.
DROPPED = {"depends_on", "security_opt", "shm_size", "pids_limit"}
# Kept as Compose wrote them (the 3.8 format's names for the same things).
KEPT = (
    "command",
    "entrypoint",
    "environment",
    "user",
    "read_only",
    "init",
    "cap_add",
    "cap_drop",
    "healthcheck",
    "stop_grace_period",
    "stop_signal",
    "working_dir",
    "labels",
    "logging",
)


def warn(message: str) -> None:
    print(f"stack.py: {message}", file=sys.stderr)


def image(name: str, registry: str) -> str:
    return f"{registry}/{name}"


def restart_policy(restart: str | None) -> dict:
    # A one-shot service (restart: "no", mlflow-migrate) runs until it succeeded once.
    if restart in ("no", None):
        return {"condition": "on-failure", "delay": "5s"}
    return {"condition": "any", "delay": "5s"}


def service_secrets(service: str) -> list[dict]:
    uid, gid = OWNERS[service]
    return [
        {"source": name, "target": name, "uid": str(uid), "gid": str(gid), "mode": 0o400}
        for name, services in USERS.items()
        if service in services
    ]


def volumes(name: str, spec: dict) -> tuple[list, set[str]]:
    """The service's mounts in the 3.8 long syntax, and the named volumes they use."""
    mounts, named = [], set()
    for mount in spec.get("volumes", []):
        if mount["type"] == "volume" and mount["source"].endswith("-secrets"):
            continue  # its Swarm secrets instead (service_secrets)
        if mount["type"] == "bind" and mount["source"] == "/var/run/docker.sock":
            mounts.append({"type": "bind", "source": mount["source"], "target": mount["target"]})
            continue
        entry = {k: mount[k] for k in ("type", "source", "target", "read_only") if k in mount}
        if mount["type"] == "volume":
            named.add(mount["source"])
        elif mount["type"] == "bind":
            warn(f"{name}: {mount['source']} is a folder of this host: {name} runs on a manager")
        mounts.append(entry)
    for tmpfs in spec.get("tmpfs", []):
        target, _, options = tmpfs.partition(":")
        if options:
            warn(
                f"{name}: tmpfs {target}: Swarm takes no '{options}' (root's; the image's folder gives its mode)"
            )
        mounts.append({"type": "tmpfs", "target": target})
    return mounts, named


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def workbench(
    compose: dict, *, registry: str, replicas: int, mlflow_port: int, jupyter_port: int, portainer: bool
) -> dict:
    project = compose["name"]
    services, used_volumes, used_secrets = {}, set(), set()
    for name, spec in compose["services"].items():
        if name in LEFT_OUT or (name == "portainer" and not portainer):
            continue
        out = {k: spec[k] for k in KEPT if spec.get(k) not in (None, [], {})}
        dropped = sorted(set(spec) & DROPPED)
        if dropped:
            warn(f"{name}: left out, Swarm does not take them: {', '.join(dropped)}")
        out["image"] = image(spec["image"], registry)
        out["networks"] = sorted(spec.get("networks", {}))
        out["volumes"], named = volumes(name, spec)
        used_volumes |= named
        deploy = {
            "endpoint_mode": "dnsrr",
            "replicas": 1,
            "restart_policy": restart_policy(spec.get("restart")),
            # One at a time; a task that does not become healthy rolls the service back.
            "update_config": {
                "parallelism": 1,
                "order": "stop-first",
                "failure_action": "rollback",
                "monitor": "30s",
            },
        }
        if "mem_limit" in spec:
            deploy["resources"] = {"limits": {"memory": str(spec["mem_limit"])}}
        if name == "mlflow-server":
            # Replicas on the same Postgres and FTP (mlflow-server/README.md, "Replicas"): a new
            # one answers before an old one leaves.
            deploy["replicas"] = replicas
            deploy["update_config"]["order"] = "start-first"
        if name in ON_A_MANAGER:
            deploy["placement"] = {"constraints": ["node.role == manager"]}
        out["deploy"] = deploy
        if name in OWNERS:
            out["secrets"] = service_secrets(name)
            used_secrets |= {s["source"] for s in out["secrets"]}
        if name == "jupyter":
            # Through the edge: every healthy tracking server replica, checked by HAProxy.
            out["environment"]["MLFLOW_TRACKING_URI"] = "http://edge:5080"
            out["environment"]["MLFLOW_NOTEBOOK_TRACE_RENDERER_BASE_URL"] = f"http://127.0.0.1:{mlflow_port}"
        if name == "portainer":
            out["ports"] = [{"target": 9443, "published": int(spec["ports"][0]["published"]), "mode": "host"}]
        services[name] = out
    services["edge"] = {
        "image": image(
            compose["services"]["mlflow-server"]["image"].replace("mlflow-server", "gateway"), registry
        ),
        "entrypoint": ["haproxy", "-db", "-f", "/etc/haproxy/edge.cfg"],
        "configs": [{"source": "edge-config", "target": "/etc/haproxy/edge.cfg"}],
        "read_only": True,
        "cap_drop": ["ALL"],
        "networks": ["frontend"],
        "ports": [
            {"target": 5000, "published": mlflow_port, "mode": "host"},
            {"target": 8888, "published": jupyter_port, "mode": "host"},
        ],
        "logging": compose["services"]["mlflow-server"].get("logging", {}),
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": 1,
            "restart_policy": {"condition": "any", "delay": "5s"},
            # Its ports are the host's: the new task can only start once the old one left.
            "update_config": {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"},
            "resources": {"limits": {"memory": "256m"}},
            "placement": {"constraints": ["node.role == manager"]},
        },
    }
    networks = {}
    for name, spec in compose["networks"].items():
        networks[name] = {"driver": "overlay", "attachable": True}
        if spec.get("internal"):
            networks[name]["internal"] = True
    return {
        "version": FORMAT,
        "services": services,
        "networks": networks,
        "volumes": {name: {} for name in sorted(used_volumes)},
        "secrets": {
            name: {"file": str(Path(os.environ["SECRETS_DIR"]).resolve() / name)}
            for name in sorted(used_secrets)
        },
        # Swarm configs cannot change: a changed edge.cfg is a new config (its hash in the name).
        "configs": {
            "edge-config": {"file": str(EDGE_CONFIG), "name": f"{project}_edge-{digest(EDGE_CONFIG)}"}
        },
    }


def serve(args: argparse.Namespace) -> dict:
    """A served model: REPLICAS tasks of its image, and its gateway (serving/gateway) in front."""
    project, port = args.project, args.port
    labels = {
        "org.workbench.project": project,
        "org.workbench.serving.port": str(port),
        "org.workbench.model.uri": args.model,
        "org.workbench.model.name": args.name,
    }
    health = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4)"
    model = {
        "image": args.image,
        # Hardened as serve.sh's replicas are (serving/README.md): not root, read-only, no capability.
        "user": "65534:65534",
        "environment": {
            "HOME": "/tmp",
            "MLFLOW_MODELS_WORKERS": str(args.workers),
            "UVICORN_ACCESS_LOG": "false",
        },
        "read_only": True,
        "cap_drop": ["ALL"],
        "volumes": [{"type": "tmpfs", "target": t} for t in ("/tmp", "/var/lib/nginx", "/var/log/nginx")],
        "healthcheck": {
            "test": ["CMD", "python", "-c", health],
            "interval": "2s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "300s",
        },
        "networks": ["frontend"],
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": args.replicas,
            "labels": labels,
            "restart_policy": {"condition": "any", "delay": "2s"},
            # The rolling update: one task at a time, the new one healthy before the old one stops;
            # HAProxy finds the tasks by DNS and checks each on /ping.
            "update_config": {
                "parallelism": 1,
                "order": "start-first",
                "failure_action": "rollback",
                "delay": "2s",
                "monitor": "10s",
            },
            "resources": {"limits": {"memory": args.memory}},
        },
    }
    gateway = {
        "image": args.gateway_image,
        "environment": {
            "UPSTREAM": f"serve-{port}-model",
            "MODEL_NAME": args.name,
            "WORKBENCH_SERVING_KEYS": args.keys,
            "RATE_LIMIT": str(args.rate_limit),
            "BODY_LIMIT_BYTES": str(args.body_limit_bytes),
        },
        "read_only": True,
        "cap_drop": ["ALL"],
        "volumes": [
            {"type": "volume", "source": "serving-keys", "target": "/keys", "read_only": True},
            {"type": "tmpfs", "target": "/run/haproxy"},
        ],
        "networks": ["frontend"],
        "ports": [{"target": 8080, "published": port, "mode": "host"}],
        "deploy": {
            "endpoint_mode": "dnsrr",
            "replicas": 1,
            # `make serve-key`/`serve-key-revoke` reach the gateway's containers by these labels.
            "labels": labels,
            "restart_policy": {"condition": "any", "delay": "2s"},
            "update_config": {"parallelism": 1, "order": "stop-first", "failure_action": "rollback"},
            "resources": {"limits": {"memory": "256m"}},
            # The keys' volume and the published port are this manager's.
            "placement": {"constraints": ["node.role == manager"]},
        },
    }
    model_labels = {**labels, "org.workbench.serving": "true"}
    gateway_labels = {**labels, "org.workbench.serving.gateway": "true"}
    model["labels"] = model_labels
    gateway["labels"] = gateway_labels
    return {
        "version": FORMAT,
        "services": {f"serve-{port}-model": model, f"serve-{port}": gateway},
        "networks": {"frontend": {"external": True, "name": f"{project}_frontend"}},
        "volumes": {"serving-keys": {"external": True, "name": f"{project}_serving-keys"}},
    }


def create_secrets(compose: dict, folder: Path) -> None:
    """Each secret's file, once: the value .env gives (Compose's configs of secrets-init), else
    random, as secrets-init does for `make up`. Kept afterwards: Swarm secrets cannot change."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name in USERS:
        path = folder / name
        seed = (compose.get("configs", {}).get(name, {}).get("content") or "").strip()
        if path.exists():
            if seed and path.read_text() != seed:
                sys.exit(
                    f"stack.py: {name.upper().replace('-', '_')} in .env differs from {path}: "
                    "secrets are set once (put the original value back, or remove it from .env)"
                )
            continue
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(seed or secrets.token_urlsafe(24))
        print(f"stack.py: {name:<26} {'from .env' if seed else 'generated'} -> {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    stack = commands.add_parser("workbench")
    stack.add_argument("--registry", required=True)
    stack.add_argument("--replicas", type=int, default=2)
    stack.add_argument("--mlflow-port", type=int, default=5000)
    stack.add_argument("--jupyter-port", type=int, default=8888)
    stack.add_argument("--portainer", action="store_true")
    model = commands.add_parser("serve")
    for option in ("project", "model", "name", "image", "gateway-image", "memory"):
        model.add_argument(f"--{option}", required=True)
    for option in ("port", "replicas", "workers", "rate-limit", "body-limit-bytes"):
        model.add_argument(f"--{option}", type=int, required=True)
    model.add_argument("--keys", choices=("on", "off"), default="on")
    commands.add_parser("secrets")
    args = parser.parse_args()

    if args.command == "serve":
        if not 1 <= args.replicas <= 16:
            sys.exit(f"stack.py: REPLICAS={args.replicas} is not a number of replicas from 1 to 16")
        json.dump(serve(args), sys.stdout, indent=1)
        return
    compose = json.load(sys.stdin)
    if args.command == "secrets":
        create_secrets(compose, Path(os.environ["SECRETS_DIR"]))
        return
    if not 1 <= args.replicas <= 8:
        sys.exit(f"stack.py: MLFLOW_SERVER_REPLICAS={args.replicas} is not a number from 1 to 8")
    json.dump(
        workbench(
            compose,
            registry=args.registry,
            replicas=args.replicas,
            mlflow_port=args.mlflow_port,
            jupyter_port=args.jupyter_port,
            portainer=args.portainer,
        ),
        sys.stdout,
        indent=1,
    )


if __name__ == "__main__":
    main()
