"""``deploy/kubernetes/``: every manifest validates against the Kubernetes JSON schemas bundled in the
kubernetes-validate package (offline: the network is cut while validating), and the pieces agree with each
other and with voice-channel's own settings and shutdown rule."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_support import need_module
from processes import ROOT
from voice_channel.settings import Settings, load_settings

kubernetes_validate = need_module("kubernetes_validate", "test-deploy")

MANIFESTS = ROOT / "deploy" / "kubernetes"
#: The oldest Kubernetes these manifests are for (the preStop ``sleep`` action is on by default from 1.30)
#: and the newest whose schemas the package bundles.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def find(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def channel_container() -> dict[str, Any]:
    containers = find("Deployment", "voice-channel")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "voice-channel")


def channel_settings() -> Settings:
    """The container's VOICE_CHANNEL_* environment, loaded the way the workers load it."""
    env = {e["name"]: e["value"] for e in channel_container()["env"] if "value" in e}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if name.startswith("VOICE_CHANNEL_"):
                patch.setenv(name, value)
        patch.setenv("VOICE_CHANNEL_RUNTIME", "echo")  # the runtime's own settings are not ours to check
        return load_settings()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_expected_objects_are_there():
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in documents())
    assert kinds == [
        ("Deployment", "voice-channel"),
        ("Deployment", "voice-channel-redis"),
        ("HorizontalPodAutoscaler", "voice-channel"),
        ("PodDisruptionBudget", "voice-channel"),
        ("Service", "voice-channel"),
        ("Service", "voice-channel-redis"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas_offline(version, no_network):
    for path, doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']} is invalid for {version}: {exc}")


def test_a_broken_manifest_is_refused(no_network):
    deployment = find("Deployment", "voice-channel")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    unknown = {**deployment, "spec": {**deployment["spec"], "terminationGracePeriod": 30}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, VERSIONS[-1], strict=True)


def test_the_container_settings_are_valid_voice_channel_settings():
    settings = channel_settings()
    assert settings.server.host == "0.0.0.0" and settings.server.trusted_proxy_hops == 1
    assert settings.redis.url is not None and "voice-channel-redis:6379" in settings.redis.url.get_secret_value()
    port = next(p for p in channel_container()["ports"] if p["name"] == "http")["containerPort"]
    assert port == settings.server.port


def test_probes_use_readiness_and_liveness_endpoints():
    container = channel_container()
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"


def test_the_grace_period_covers_prestop_drain_shutdown_and_gunicorns_graceful_timeout():
    settings = channel_settings()
    pod = find("Deployment", "voice-channel")["spec"]["template"]["spec"]
    pre_stop = channel_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    # gunicorn's graceful_timeout, as voice_channel.gunicorn_conf derives it.
    graceful = int(settings.server.drain_timeout_s + settings.server.shutdown_timeout_s + 5)
    assert settings.server.drain_timeout_s >= 600, "ElevenLabs' longest conversation can finish"
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + graceful


def test_service_hpa_and_budget_point_at_the_deployment():
    deployment = find("Deployment", "voice-channel")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find("Service", "voice-channel")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = find("HorizontalPodAutoscaler", "voice-channel")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "voice-channel"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "cpu" in channel_container()["resources"]["requests"], "utilization is relative to the request"
    pdb = find("PodDisruptionBudget", "voice-channel")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    redis_service = find("Service", "voice-channel-redis")
    redis_labels = find("Deployment", "voice-channel-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis_service["spec"]["selector"].items() <= redis_labels.items()


def test_one_gunicorn_worker_per_requested_core():
    settings = channel_settings()
    assert str(settings.server.workers) == channel_container()["resources"]["requests"]["cpu"]
