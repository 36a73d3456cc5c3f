"""docker-compose.yml against the compose specification, then what makes it work: KRaft, a
replica set that initiates itself, health checks, start order, settings Ferry accepts, and what
keeps it safe: ports on 127.0.0.1 only, credentials from `.env` with no defaults."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import WorkerSettings, settings_from_env
from service.webhooks.secret_cipher import new_encryption_key
from tests.deploy.conftest import COMPOSE, ROOT, setting_variables

ENV_EXAMPLE = ROOT / ".env.example"
# ${NAME}, ${NAME:-default} or ${NAME:?message}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<kind>:[-?])(?P<rest>[^}]*))?\}")
# What someone following .env.example would put in .env.
FILLED_IN_ENV = {
    "MINIO_ROOT_USER": "ferry",
    "MINIO_ROOT_PASSWORD": "a-long-random-password",
    "FERRY_SECRET_ENCRYPTION_KEYS": new_encryption_key(),
}

FERRY_ROLES = ("provision", "worker", "api", "webhooks")
LONG_RUNNING = ("worker", "api", "webhooks")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_file_matches_the_compose_specification() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert not any("ZOOKEEPER" in name for name in env)
    # Ferry's containers reach the broker by the name it advertises to them.
    assert "INTERNAL://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_mongodb_is_a_replica_set_the_compose_file_initiates(compose: dict[str, Any]) -> None:
    mongo = compose["services"]["mongo"]
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    script = mongo["healthcheck"]["test"][-1]
    assert "rs.initiate(" in script
    assert f"_id: '{replica_set}'" in script
    assert "host: 'mongo:27017'" in script
    assert "isWritablePrimary" in script  # healthy only once writes (transactions) work
    url = compose["x-ferry-env"]["FERRY_MONGO__URL"]
    assert url.startswith("mongodb://mongo:27017/")
    assert f"replicaSet={replica_set}" in url


def test_every_service_has_a_health_check_or_is_a_one_shot(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "provision":
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name


def test_ferry_roles_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    provision = services["provision"]["depends_on"]
    assert {name: dep["condition"] for name, dep in provision.items()} == {
        "kafka": "service_healthy",
        "mongo": "service_healthy",
        "minio": "service_healthy",
    }
    for role in LONG_RUNNING:
        depends = services[role]["depends_on"]
        assert depends["provision"]["condition"] == "service_completed_successfully", role
        assert depends["mongo"]["condition"] == "service_healthy", role


def test_ferry_roles_run_the_one_image_locked_down(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = {services[role]["image"] for role in FERRY_ROLES}
    assert len(images) == 1
    for role in FERRY_ROLES:
        service = services[role]
        assert service["command"] == [role]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


def test_health_checks_knock_where_each_role_listens(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = compose["x-ferry-env"]
    ports = {
        "api": 8000,  # FERRY_API__PORT's default
        "worker": int(env["FERRY_OBSERVABILITY__HEALTH_PORT"]),
        "webhooks": int(env["FERRY_OBSERVABILITY__HEALTH_PORT"]),
    }
    for role, port in ports.items():
        probe = " ".join(services[role]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, role


def test_workers_get_longer_than_their_shutdown_grace(compose: dict[str, Any]) -> None:
    grace = WorkerSettings().shutdown_grace_seconds
    stop_after = compose["services"]["worker"]["stop_grace_period"]
    assert stop_after.endswith("s")
    assert float(stop_after.removesuffix("s")) > grace + 10


def test_ferry_environment_is_settings_ferry_accepts(compose: dict[str, Any]) -> None:
    env = {name: _expand(str(value)) for name, value in compose["x-ferry-env"].items()}
    assert set(env) <= setting_variables()
    settings = settings_from_env(env)
    assert settings.environment == "production"
    assert settings.kafka.idempotent_producer is True  # real Kafka has it
    assert settings.s3.endpoint == "http://minio:9000"
    assert settings.s3.public_endpoint == "http://localhost:9000"
    assert settings.webhooks.encryption_keys == [FILLED_IN_ENV["FERRY_SECRET_ENCRYPTION_KEYS"]]
    minio = compose["services"]["minio"]["environment"]
    assert _expand(minio["MINIO_ROOT_USER"]) == settings.s3.access_key.get_secret_value()
    assert _expand(minio["MINIO_ROOT_PASSWORD"]) == settings.s3.secret_key.get_secret_value()


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["mongo"] == []  # the compose network only
    assert all(published[name] for name in ("kafka", "minio", "api"))
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_credentials_come_from_env_with_no_defaults(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    required = {m["name"] for m in _VARIABLE.finditer(text) if m["kind"] == ":?"}
    assert required == set(FILLED_IN_ENV)
    for match in _VARIABLE.finditer(text):
        if match["kind"] == ":-":  # a default: never for a credential
            assert not re.search("USER|PASSWORD|KEY|SECRET", match["name"]), match[0]
    # .env.example names each, with no value to be taken as it is.
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) == set(FILLED_IN_ENV)
    assert example["MINIO_ROOT_PASSWORD"] == ""
    assert example["FERRY_SECRET_ENCRYPTION_KEYS"] == ""
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    env = compose["x-ferry-env"]
    assert env["FERRY_ENVIRONMENT"] == "production"
    assert "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS" in env


def _expand(value: str) -> str:
    """`value` as compose expands it with `.env` filled in as .env.example asks (a variable
    left unset takes its `:-` default)."""

    def one(match: re.Match[str]) -> str:
        name = match["name"]
        if name in FILLED_IN_ENV:
            return FILLED_IN_ENV[name]
        assert match["kind"] == ":-", f"{name} has no value in the test's .env"
        return match["rest"]

    return _VARIABLE.sub(one, value)
