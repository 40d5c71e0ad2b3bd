"""The `docker run` options that give a new container the settings of a running one, read from its
`docker inspect` (bench/serving.sh; run on the host, standard library only):

    docker inspect CONTAINER | python3 bench/container_options.py [VAR=VALUE ...]

prints one option a line, ready for `mapfile -t`: the user, the read-only root file system, the
tmpfs mounts with their options (uid, mode), the capabilities dropped and added, the security
options, the memory and process limits, the log driver and its options, the health check and
every environment variable (VAR=VALUE arguments replace or add one). Not copied: the name,
labels, networks, ports, volumes, the restart policy and the image: the caller gives its own.

So the serving bench's `direct` container runs exactly as serving/serve.sh runs a replica, and its
gateways exactly as serve.sh runs a gateway, without a second copy of serve.sh's options that
could drift from it.
"""

from __future__ import annotations

import json
import sys


def duration(nanoseconds: int) -> str:
    return f"{nanoseconds // 1_000_000}ms"


def options(inspected: dict, overrides: dict[str, str]) -> list[str]:
    config, host = inspected["Config"], inspected["HostConfig"]
    out: list[str] = []
    if config.get("User"):
        out.append(f"--user={config['User']}")
    if host.get("ReadonlyRootfs"):
        out.append("--read-only")
    for path, opts in sorted((host.get("Tmpfs") or {}).items()):
        out.append(f"--tmpfs={path}:{opts}" if opts else f"--tmpfs={path}")
    out += [f"--cap-drop={c}" for c in host.get("CapDrop") or []]
    out += [f"--cap-add={c}" for c in host.get("CapAdd") or []]
    out += [f"--security-opt={s}" for s in host.get("SecurityOpt") or []]
    if host.get("Memory"):
        out.append(f"--memory={host['Memory']}")
    if host.get("PidsLimit"):
        out.append(f"--pids-limit={host['PidsLimit']}")
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        out.append(f"--log-driver={log['Type']}")
        out += [f"--log-opt={k}={v}" for k, v in sorted((log.get("Config") or {}).items())]
    # A health check given to `docker run` (always CMD-SHELL); one in CMD form is the image's own
    # HEALTHCHECK, which a new container of the same image gets anyway.
    health = config.get("Healthcheck") or {}
    test = health.get("Test") or []
    if test[:1] == ["NONE"]:
        out.append("--no-healthcheck")
    elif test[:1] == ["CMD-SHELL"]:
        out.append(f"--health-cmd={test[1]}")
        for key, flag in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start-period")):
            if health.get(key):
                out.append(f"--health-{flag}={duration(health[key])}")
        if health.get("Retries"):
            out.append(f"--health-retries={health['Retries']}")
    env = dict(line.split("=", 1) for line in config.get("Env") or [])
    env.update(overrides)
    out += [f"--env={k}={v}" for k, v in env.items()]
    if any("\n" in o for o in out):
        raise SystemExit("an option holds a newline: cannot print it one a line")
    return out


if __name__ == "__main__":
    inspected = json.load(sys.stdin)
    overrides = dict(arg.split("=", 1) for arg in sys.argv[1:])
    print("\n".join(options(inspected[0] if isinstance(inspected, list) else inspected, overrides)))
