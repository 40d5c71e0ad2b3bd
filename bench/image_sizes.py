"""Sizes of the workbench's images, each and in total, counting shared layers once (they are
stored once: every image builds FROM workbench/base). Prints JSON."""

import hashlib
import json
import subprocess
from pathlib import Path

IMAGES = [
    "workbench/base",
    "workbench/postgres",
    "workbench/ftpd",
    "workbench/mlflow-server",
    "workbench/jupyter",
]
LAYERDB = Path("/var/lib/docker/image/overlay2/layerdb/sha256")


def inspect(image: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def layer_sizes(diff_ids: list[str]) -> dict[str, int]:
    """chain id -> size, read from the engine's layer store (needs read access to it)."""
    sizes, chain = {}, None
    for diff_id in diff_ids:
        chain = (
            diff_id
            if chain is None
            else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        )
        sizes[chain] = int((LAYERDB / chain.split(":", 1)[1] / "size").read_text())
    return sizes


def main() -> None:
    tag = (
        subprocess.run(
            ["sh", "-c", "sed -n 's/^WORKBENCH_VERSION=//p' .env 2>/dev/null"], capture_output=True, text=True
        ).stdout.strip()
        or "local"
    )
    images, unique = {}, {}
    for name in IMAGES:
        data = inspect(f"{name}:{tag}")
        images[name] = data["Size"]
        try:
            unique.update(layer_sizes(data["RootFS"]["Layers"]))
        except OSError:
            unique = None
    total = sum(unique.values()) if unique is not None else None
    print(json.dumps({"images": images, "unique_total": total, "sum": sum(images.values())}))


if __name__ == "__main__":
    main()
