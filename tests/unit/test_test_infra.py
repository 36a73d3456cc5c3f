"""FERRY_TEST_INFRA=containers: where no Docker engine answers, the run stops with a message
that says what to do, instead of skipping the tests that needed the servers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import containers
from tests.support.infra import running_infra

ROOT = Path(__file__).resolve().parents[2]


def test_containers_mode_without_docker_fails_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRY_TEST_INFRA", "containers")
    # A socket nobody listens on: the same answer as a machine without Docker.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    with (
        pytest.raises(containers.DockerUnavailableError, match="needs a Docker engine") as raised,
        running_infra(tmp_path),
    ):
        pytest.fail("no infrastructure may be yielded without Docker")
    assert "unset FERRY_TEST_INFRA" in str(raised.value)


def test_an_unknown_mode_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_TEST_INFRA", "docker")
    with (
        pytest.raises(RuntimeError, match="'embedded', 'env' or 'containers'"),
        running_infra(tmp_path),
    ):
        pytest.fail("unreachable")


def test_containers_run_the_images_docker_compose_runs() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["kafka"]["image"] == containers.KAFKA_IMAGE
    assert services["mongo"]["image"] == containers.MONGO_IMAGE
    assert services["minio"]["image"] == containers.MINIO_IMAGE
