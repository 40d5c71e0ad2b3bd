"""Exercise 2 (exercises/02-registry.ipynb): the model is registered, a version is `staging`."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def registered(server, model_name) -> dict:
    found = server.get("registered-models/get", name=model_name)
    assert found, (
        f"there is no registered model named {model_name!r}: Task 1, "
        "mlflow.register_model(info.model_uri, MODEL_NAME)"
    )
    return found["registered_model"]


def test_model_is_registered(registered, model_name):
    assert registered["name"] == model_name


def test_a_version_has_the_alias_staging(registered, model_name):
    aliases = {a["alias"]: a["version"] for a in registered.get("aliases", [])}
    assert "staging" in aliases, (
        f"no version of {model_name!r} has the alias 'staging' (aliases: "
        f"{aliases or 'none'}): Task 2, client.set_registered_model_alias(...)"
    )


def test_the_staging_version_is_in_the_legacy_stage_staging(server, registered, model_name):
    aliases = {a["alias"]: a["version"] for a in registered.get("aliases", [])}
    if "staging" not in aliases:
        pytest.fail("do Task 2 first: no version has the alias 'staging'", pytrace=False)
    version = server.get("model-versions/get", name=model_name, version=aliases["staging"])["model_version"]
    assert version["current_stage"] == "Staging", (
        f"version {version['version']} (alias staging) is in stage {version['current_stage']!r}, not "
        "'Staging': Task 3, client.transition_model_version_stage(..., stage='Staging')"
    )
