""".compose-lint.yml: `make lint` runs compose-lint over docker-compose.yml (failing at HIGH);
compose-lint takes a suppression without a reason, so this checks that every one gives its
reason, and names a service that exists (a stale one would hide the finding of a service added
later under that name)."""

from __future__ import annotations

import yaml

from utils.stack import REPO


def test_every_suppression_names_a_service_and_gives_its_reason():
    config = yaml.safe_load((REPO / ".compose-lint.yml").read_text())
    services = set(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])
    assert config["rules"], "no rule configured"
    for rule, settings in config["rules"].items():
        excluded = settings.get("exclude_services", {})
        assert isinstance(excluded, dict), f"{rule}: exclude_services without reasons"
        for service, reason in excluded.items():
            assert service in services, f"{rule}: {service} is not a service of docker-compose.yml"
            assert isinstance(reason, str) and len(reason.split()) >= 5 and "TODO" not in reason, (
                f"{rule}: {service}'s suppression gives no reason"
            )
