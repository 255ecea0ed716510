"""The Kubernetes manifests agree with the code: settings, commands, topics, partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import ALL_SETTINGS, TopicNames
from darkscope.cli import main

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
SETTINGS = ALL_SETTINGS


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _setting_names() -> set[str]:
    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in SETTINGS
        for name in cls.model_fields
    }


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents() if d.get("kind") == kind]


def _config() -> dict[str, str]:
    (cm,) = [d for d in _by_kind("ConfigMap") if d["metadata"]["name"] == "darkscope-config"]
    data: dict[str, str] = cm["data"]
    return data


def _containers() -> list[dict[str, Any]]:
    return [
        c
        for d in _documents()
        if d.get("kind") in {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob"}
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def test_kustomization_lists_every_manifest_and_each_has_kind_and_name() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    for doc in _documents():
        if doc.get("kind") != "Kustomization":
            assert doc["apiVersion"] and doc["metadata"]["name"]


def test_every_darkscope_variable_in_the_manifests_is_a_real_setting() -> None:
    names = _setting_names()
    used = {k for k in _config() if k.startswith("DARKSCOPE_")}
    used |= {e["name"] for c in _containers() for e in c.get("env", []) if e["name"].startswith("DARKSCOPE_")}
    assert used and used <= names, used - names


def test_config_values_are_accepted_by_the_settings_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _config().items():
        monkeypatch.setenv(key, value)
    for cls in SETTINGS:
        cls()  # a value the settings reject fails here, not in a pod


def test_secrets_reach_the_pods_only_through_secret_references() -> None:
    assert "DARKSCOPE_SINK_PASSWORD" not in _config()
    for c in _containers():
        for e in c.get("env", []):
            if e["name"] == "DARKSCOPE_SINK_PASSWORD":
                assert "secretKeyRef" in e["valueFrom"]


def test_containers_run_real_darkscope_commands() -> None:
    commands = set(main.commands)  # type: ignore[attr-defined]
    args = [c["args"] for c in _containers()]
    assert {a[0] for a in args} == {"worker", "sink", "sensor"}
    assert all(a[0] in commands for a in args)
    for c in _containers():
        for arg in c["args"][1:]:
            if arg.startswith("$(") and arg.endswith(")"):
                assert arg[2:-1] in _config()  # Kubernetes expands it from the environment


def test_topics_match_the_settings_and_the_partition_count() -> None:
    config = _config()
    topics = {d["metadata"]["name"]: d["spec"] for d in _by_kind("KafkaTopic")}
    wanted = {v for k, v in config.items() if k.startswith("DARKSCOPE_TOPIC_")}
    assert set(topics) == wanted == set(TopicNames().all())
    partitions = int(config["DARKSCOPE_PARTITIONS"])
    assert {spec["partitions"] for spec in topics.values()} == {partitions}
    assert {spec["replicas"] for spec in topics.values()} == {int(config["DARKSCOPE_REPLICATION"])}


def test_worker_autoscaling_watches_the_worker_group_and_stays_within_the_partitions() -> None:
    config = _config()
    (scaled,) = _by_kind("ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == config["DARKSCOPE_WORKER_APP_ID"]
    assert trigger["metadata"]["topic"] == config["DARKSCOPE_TOPIC_PACKETS"]
    assert trigger["metadata"]["bootstrapServers"] == config["DARKSCOPE_BOOTSTRAP"]
    assert scaled["spec"]["maxReplicaCount"] <= int(config["DARKSCOPE_PARTITIONS"])
    workers = [
        d for d in _by_kind("Deployment") if d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]
    ]
    assert workers


def test_bootstrap_and_dsn_name_the_services_the_operators_create() -> None:
    config = _config()
    (kafka,) = _by_kind("Kafka")
    assert config["DARKSCOPE_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    (chi,) = _by_kind("ClickHouseInstallation")
    assert f"@clickhouse-{chi['metadata']['name']}:8123/" in config["DARKSCOPE_SINK_DSN"]
    user = config["DARKSCOPE_SINK_DSN"].split("://", 1)[1].split("@", 1)[0]
    assert f"{user}/k8s_secret_password" in chi["spec"]["configuration"]["users"]
