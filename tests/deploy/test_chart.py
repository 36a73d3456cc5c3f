"""helm/ferry rendered without a helm binary (helm-python-sdk), linted strictly, and every
manifest validated against the Kubernetes schemas; then what the schemas cannot say: probes,
security, grace periods, and that selectors and references point at real objects."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest

from service.config import KafkaSettings, MongoSettings, WorkerSettings
from tests.deploy.conftest import CHART, load_yaml_documents, setting_variables

# The chart's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
# Kinds from CRDs (KEDA, prometheus-operator): no Kubernetes schema; checked by hand below.
CUSTOM_KINDS = {"ScaledObject", "PodMonitor"}
SECRET_VALUES = {
    "FERRY_MONGO__URL": "mongodb://ferry:pw@mongo-0.mongo:27017/?replicaSet=rs0",
    "FERRY_S3__ACCESS_KEY": "AKIA0000",
    "FERRY_S3__SECRET_KEY": "s3cr3t",
    "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": "ZmVycnktY2hhcnQtdGVzdC1lbmNyeXB0aW9uLWtleSE=",
}
# Every optional part switched on, and every value that changes what is rendered set.
ALL_ON: dict[str, Any] = {
    "image": {"digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "config": {
        "FERRY_KAFKA__BOOTSTRAP_SERVERS": "kafka-0.kafka:9092,kafka-1.kafka:9092",
        "FERRY_KAFKA__INTAKE_GROUP": "ferry-intake-eu",
        "FERRY_KAFKA__REQUESTS_TOPIC": "eu.ferry.requests",
        "FERRY_MONGO__DATABASE": "ferry_eu",
        "FERRY_WORKER__SHUTDOWN_GRACE_SECONDS": "50",
        "FERRY_OBSERVABILITY__TRACING": "true",
    },
    "secrets": {"create": True, "existingSecret": "", "values": SECRET_VALUES},
    "serviceAccount": {"name": "ferry-sa", "annotations": {"example.com/role": "ferry"}},
    "podAnnotations": {"example.com/team": "data"},
    "podLabels": {"team": "data"},
    "metrics": {"podMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "worker": {
        "terminationGracePeriodSeconds": 75,
        "keda": {
            "enabled": True,
            "kafkaLag": {"enabled": True, "authenticationRef": "kafka-sasl"},
            "pendingJobs": {"enabled": True, "authenticationRef": "mongo-connection"},
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {
                                "matchLabels": {"app.kubernetes.io/component": "worker"}
                            },
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "worker"}},
            }
        ],
    },
    "api": {
        "service": {"type": "LoadBalancer", "annotations": {"example.com/lb": "internal"}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
            "tls": [{"hosts": ["ferry.example.com"], "secretName": "ferry-tls"}],
        },
    },
    "webhooks": {"enabled": True},
}


def render(values: dict[str, Any] | None = None) -> dict[str, str]:
    # Rendered once per distinct set of values in a run: many checks read the same manifests.
    return dict(_rendered(json.dumps(values or {}, sort_keys=True)))


@functools.cache
def _rendered(values: str) -> tuple[tuple[str, str], ...]:
    chart = helm_python.Chart.load(CHART)
    rendered = chart.render(json.loads(values), name="ferry", namespace="ferry", is_install=True)
    return tuple(rendered.items())


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    # A copy each time: a check may change what it reads.
    return copy.deepcopy(_manifests(json.dumps(values or {}, sort_keys=True)))


@functools.cache
def _manifests(values: str) -> list[dict[str, Any]]:
    return [
        document
        for name, text in render(json.loads(values)).items()
        if name.endswith(".yaml")
        for document in load_yaml_documents(text)
    ]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        obj["metadata"]["name"]: obj["spec"]["template"]["spec"]
        for obj in objects
        if obj["kind"] in {"Deployment", "Job"}
    }


DEFAULTS = pytest.param(None, id="defaults")
EVERYTHING = pytest.param(ALL_ON, id="all-on")


@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_the_chart_lints_strictly(values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, kube_version="v1.27.0")
    problems = [message for message in report["messages"] if message["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_every_manifest_is_valid_kubernetes(values: dict[str, Any] | None, version: str) -> None:
    objects = manifests(values)
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        # Strict: an unknown or misplaced field fails, as `kubectl apply --validate=strict` would.
        kubernetes_validate.validate(obj, version, strict=True)


def test_all_on_renders_every_template() -> None:
    rendered = render(ALL_ON)
    empty = [
        name
        for name, text in rendered.items()
        if name.endswith(".yaml") and not load_yaml_documents(text)
    ]
    assert empty == []
    kinds = {obj["kind"] for obj in manifests(ALL_ON)}
    assert kinds == {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
        "PodMonitor",
        "Job",
    }


@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_every_pod_is_locked_down(values: dict[str, Any] | None) -> None:
    specs = pod_specs(manifests(values))
    assert set(specs) >= {"ferry-worker", "ferry-api", "ferry-webhooks", "ferry-provision"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] != 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name
            # The read-only root leaves /tmp as the one writable place.
            mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
            assert mounts == {"/tmp"}  # noqa: S108 - a path in the manifest, not a file we open


@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_every_role_has_probes_on_a_port_it_opens(values: dict[str, Any] | None) -> None:
    deployments = by_kind(manifests(values), "Deployment")
    assert set(deployments) == {"ferry-worker", "ferry-api", "ferry-webhooks"}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [name.removeprefix("ferry-")]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        for probe, path in (
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ):
            assert container[probe]["httpGet"]["path"] == path, (name, probe)
            assert container[probe]["httpGet"]["port"] in ports, (name, probe)
        env = {item["name"]: item["value"] for item in container["env"]}
        (port,) = ports.values()
        if name == "ferry-api":
            assert env["FERRY_API__PORT"] == str(port)
        else:
            # The background roles' health server listens where the probes knock.
            assert env["FERRY_OBSERVABILITY__HEALTH_PORT"] == str(port)
            assert env["FERRY_OBSERVABILITY__HEALTH_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_workers_get_longer_than_their_shutdown_grace(values: dict[str, Any] | None) -> None:
    objects = manifests(values)
    config = by_kind(objects, "ConfigMap")["ferry"]["data"]
    grace = float(
        config.get("FERRY_WORKER__SHUTDOWN_GRACE_SECONDS", WorkerSettings().shutdown_grace_seconds)
    )
    worker = by_kind(objects, "Deployment")["ferry-worker"]["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] > grace + 10


def test_a_grace_period_too_short_for_the_workers_is_refused() -> None:
    values = {"config": {"FERRY_WORKER__SHUTDOWN_GRACE_SECONDS": "40"}}
    with pytest.raises(helm_python.HelmError, match="terminationGracePeriodSeconds"):
        render(values)


def test_settings_in_the_chart_are_settings_ferry_reads() -> None:
    known = setting_variables()
    for values in (None, ALL_ON):
        config = by_kind(manifests(values), "ConfigMap")["ferry"]["data"]
        assert set(config) <= known
    deployments = by_kind(manifests(ALL_ON), "Deployment")
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert {item["name"] for item in container["env"]} <= known
    assert set(SECRET_VALUES) <= known


def test_secrets_are_referenced_or_created() -> None:
    default_objects = manifests()
    assert by_kind(default_objects, "Secret") == {}
    for spec in pod_specs(default_objects).values():
        refs = [
            source["secretRef"]["name"]
            for source in spec["containers"][0]["envFrom"]
            if "secretRef" in source
        ]
        assert refs == ["ferry-credentials"]

    objects = manifests(ALL_ON)
    secret = by_kind(objects, "Secret")["ferry"]
    assert secret["stringData"] == SECRET_VALUES
    for name, spec in pod_specs(objects).items():
        refs = [
            source["secretRef"]["name"]
            for source in spec["containers"][0]["envFrom"]
            if "secretRef" in source
        ]
        assert refs == ["ferry"], name
    # Credentials never land in the ConfigMap.
    assert not set(SECRET_VALUES) & set(by_kind(objects, "ConfigMap")["ferry"]["data"])


def test_a_changed_setting_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        deployments = by_kind(manifests(values), "Deployment").values()
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in deployments
        }

    before = checksums({})
    after = checksums({"config": {"FERRY_LOG_LEVEL": "debug"}})
    assert len(before) == len(after) == 1
    assert before != after


@pytest.mark.parametrize("values", [DEFAULTS, EVERYTHING])
def test_selectors_and_references_point_at_real_objects(values: dict[str, Any] | None) -> None:
    objects = manifests(values)
    deployments = by_kind(objects, "Deployment")
    labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}

    def selected(selector: dict[str, str]) -> list[str]:
        return [name for name, pod in labels.items() if selector.items() <= pod.items()]

    for name, pdb in by_kind(objects, "PodDisruptionBudget").items():
        assert selected(pdb["spec"]["selector"]["matchLabels"]) == [name], name
    service = by_kind(objects, "Service")["ferry-api"]
    assert selected(service["spec"]["selector"]) == ["ferry-api"]
    api_ports = {
        p["name"]
        for p in deployments["ferry-api"]["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert service["spec"]["ports"][0]["targetPort"] in api_ports
    for deployment in deployments.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in by_kind(objects, "ServiceAccount")
    for ingress in by_kind(objects, "Ingress").values():
        backends = {
            path["backend"]["service"]["name"]
            for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]
        }
        assert backends == {"ferry-api"}


def test_autoscalers_own_the_replica_counts_they_scale() -> None:
    objects = manifests(ALL_ON)
    deployments = by_kind(objects, "Deployment")
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["ferry-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ferry-api"
    scaled = by_kind(objects, "ScaledObject")["ferry-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ferry-worker"
    # A fixed count would fight the autoscaler on every upgrade.
    assert "replicas" not in deployments["ferry-api"]["spec"]
    assert "replicas" not in deployments["ferry-worker"]["spec"]
    assert deployments["ferry-webhooks"]["spec"]["replicas"] == 2
    # Without KEDA, the worker count is the chart's.
    plain = by_kind(manifests(), "Deployment")["ferry-worker"]
    assert plain["spec"]["replicas"] == 2


def test_keda_triggers_follow_ferry_settings() -> None:
    scaled = by_kind(manifests(ALL_ON), "ScaledObject")["ferry-worker"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    kafka, mongodb = scaled["spec"]["triggers"]
    assert kafka["type"] == "kafka"
    assert kafka["metadata"] == {
        "bootstrapServers": ALL_ON["config"]["FERRY_KAFKA__BOOTSTRAP_SERVERS"],
        "consumerGroup": "ferry-intake-eu",
        "topic": "eu.ferry.requests",
        "lagThreshold": "50",
        "offsetResetPolicy": "earliest",
    }
    assert kafka["authenticationRef"] == {"name": "kafka-sasl"}
    assert mongodb["type"] == "mongodb"
    assert mongodb["metadata"]["dbName"] == "ferry_eu"
    assert json.loads(mongodb["metadata"]["query"]) == {"status": "pending"}
    assert mongodb["authenticationRef"] == {"name": "mongo-connection"}

    # With Ferry's defaults left alone, the trigger's defaults must be Ferry's defaults.
    values = copy.deepcopy(ALL_ON)
    values["config"] = {}  # merged with the chart's: only the keys ALL_ON added go
    defaults = by_kind(manifests(values), "ScaledObject")["ferry-worker"]["spec"]["triggers"]
    kafka_defaults = KafkaSettings()
    assert defaults[0]["metadata"]["consumerGroup"] == kafka_defaults.intake_group
    assert defaults[0]["metadata"]["topic"] == kafka_defaults.requests_topic
    assert defaults[1]["metadata"]["dbName"] == MongoSettings().database


def test_pod_monitor_scrapes_every_role() -> None:
    objects = manifests(ALL_ON)
    monitor = by_kind(objects, "PodMonitor")["ferry"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]}
    for deployment in by_kind(objects, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert any((port["name"], "/metrics") in endpoints for port in ports)


def test_provisioning_runs_as_a_hook_with_the_release_settings() -> None:
    job = by_kind(manifests(ALL_ON), "Job")["ferry-provision"]
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["provision"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["FERRY_KAFKA__REQUESTS_TOPIC"] == "eu.ferry.requests"
    assert container["image"] == "ghcr.io/ferry-project/ferry@" + ALL_ON["image"]["digest"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"worker": {"replicaz": 3}}, "replicaz"),
        ({"config": {"FERRY_S3__SECRET_KEY": "in-the-configmap"}}, "config"),
        ({"config": {"kafka_servers": "k:9092"}}, "kafka_servers"),
        ({"secrets": {"create": False, "existingSecret": ""}}, "existingSecret"),
        ({"secrets": {"create": True, "existingSecret": "", "values": {}}}, "FERRY_MONGO__URL"),
        (
            {"config": {"FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS": "in-the-configmap"}},
            "config",
        ),
        (
            {
                "secrets": {
                    "create": True,
                    "existingSecret": "",
                    "values": {k: v for k, v in SECRET_VALUES.items() if "ENCRYPTION" not in k},
                }
            },
            "FERRY_WEBHOOKS__SECRET_ENCRYPTION_KEYS",
        ),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"api": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}}, "minimum"),
    ],
    ids=[
        "unknown-key",
        "credential-in-config",
        "not-a-ferry-variable",
        "no-secret",
        "created-secret-incomplete",
        "encryption-key-in-config",
        "created-secret-without-encryption-key",
        "writable-root",
        "bad-target",
    ],
)
def test_the_values_schema_refuses_mistakes(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmError, match=complaint):
        render(values)


def test_values_schema_is_a_valid_schema_and_admits_the_defaults() -> None:
    chart = helm_python.Chart.load(CHART)
    schema = chart.schema
    assert schema is not None
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(chart.values, schema)


def test_notes_tell_how_to_reach_the_api_and_create_the_secret() -> None:
    notes = render()["ferry/templates/NOTES.txt"]
    assert "create secret generic ferry-credentials" in notes
    for name in SECRET_VALUES:  # every credential Ferry refuses to start without
        assert f"--from-literal={name}=" in notes
    assert "port-forward svc/ferry-api" in notes
    notes = render(ALL_ON)["ferry/templates/NOTES.txt"]
    assert "https://ferry.example.com/v1/exports" in notes
    assert "create secret" not in notes
