"""The Dockerfile, read statically (no Docker engine where the tests run): multi-stage, not
root, no dev dependencies, one image for every role, and a build context that holds what the
build copies."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass

import pytest
import yaml

from tests.deploy.conftest import CHART, DOCKERFILE, ROOT, setting_variables


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    parsed: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        parsed.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return parsed


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_the_build_has_a_build_stage_and_a_runtime_stage() -> None:
    build, runtime = stages()
    assert build[0].arguments.endswith("AS build")
    assert runtime[0].arguments.endswith("AS runtime")
    # The runtime stage takes the installed virtualenv and nothing else from the build.
    copies = [i.arguments for i in runtime if i.keyword == "COPY"]
    assert copies == ["--from=build /opt/ferry /opt/ferry"]


def test_it_runs_as_a_numeric_non_root_user() -> None:
    runtime = stages()[-1]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    # Nothing runs as root after the switch.
    after = runtime[[i.keyword for i in runtime].index("USER") :]
    assert "RUN" not in {i.keyword for i in after}
    # Kubernetes' runAsNonRoot check and the chart's securityContext use the same id.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)


def test_only_runtime_dependencies_are_installed() -> None:
    installs = [
        i.arguments for i in instructions() if i.keyword == "RUN" and "pip install" in i.arguments
    ]
    assert len(installs) == 1
    (install,) = installs
    assert "--constraint constraints.txt" in install
    extras = re.findall(r"\.\[([a-z,]+)\]", install)
    assert extras == ["tracing"]  # never dev (test tools) or embedded (dev-only servers)
    assert " -e " not in install
    assert "--editable" not in install
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "tracing = [" in pyproject


def test_one_image_serves_every_role_through_the_ferry_command() -> None:
    runtime = stages()[-1]
    (entrypoint,) = [json.loads(i.arguments) for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["ferry"]
    from service.cli import app  # noqa: PLC0415

    commands = {
        command.name or command.callback.__name__
        for command in app.registered_commands
        if command.callback is not None
    }
    assert {"worker", "api", "provision"} <= commands


def test_image_defaults_are_ferry_settings_matching_the_chart() -> None:
    runtime = stages()[-1]
    env: dict[str, str] = {}
    for instruction in runtime:
        if instruction.keyword == "ENV":
            env.update(dict(re.findall(r"(\S+?)=(\S+)", instruction.arguments)))
    ferry = {name: value for name, value in env.items() if name.startswith("FERRY_")}
    assert set(ferry) <= setting_variables()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(ferry["FERRY_OBSERVABILITY__HEALTH_PORT"]) == values["worker"]["healthPort"]
    exposed = {int(port) for i in runtime if i.keyword == "EXPOSE" for port in i.arguments.split()}
    assert exposed == {values["api"]["port"], values["worker"]["healthPort"]}


@pytest.mark.parametrize(
    "excluded",
    [
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        ".ferry/dev.env",
        "helm/ferry/values.yaml",
    ],
)
def test_the_build_context_leaves_local_state_out(excluded: str) -> None:
    assert not _in_context(excluded)


def test_the_build_context_holds_what_the_build_copies() -> None:
    for instruction in instructions():
        if instruction.keyword != "COPY" or instruction.arguments.startswith("--from"):
            continue
        *sources, _ = instruction.arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert _in_context(source), source
    assert _in_context("service/worker.py")


def _in_context(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins)."""
    included = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.removeprefix("!").removeprefix("**/").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes) or any(
            fnmatch.fnmatch(part, pattern) for part in parts if rule.startswith(("**/", "!**/"))
        ):
            included = negate
    return included
