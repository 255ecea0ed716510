"""The Kubernetes manifests agree with the code and with their own sizing.

Every kustomization under infra/k8s (the base and each overlay) is rendered with the pinned
kustomize (infra/k8s-check/check.py --render, which fetches it on first use) and checked:
settings, commands, topics and partitions against the code; replicas, partitions and disks
against the rate the kustomization is sized for (its ConfigMap's
``darkscope.io/sized-for-packets-per-second``) and the per-packet costs measured here.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import ALL_SETTINGS, TopicNames
from darkscope.cli import main

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
CHECK = REPO / "infra" / "k8s-check" / "check.py"
SETTINGS = ALL_SETTINGS
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml"))

# Planning figures (README, "Scaling on Kubernetes"): a worker at half a core carries about
# 125k packets/s; a raw packet takes ~42 B in ClickHouse, plus 20% for rollups and merges;
# Kafka's size caps take at most 70% of a broker's volume (the rest: counts, windows, changelogs).
WORKER_PACKETS_PER_S = 125_000
CLICKHOUSE_BYTES_PER_PACKET = 42
CLICKHOUSE_HEADROOM = 1.2
KAFKA_CAPS_SHARE = 0.7


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    """The resources kustomize renders for infra/k8s/<name>."""
    proc = subprocess.run(
        [sys.executable, str(CHECK), "--render", str(K8S / name)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def _by_kind(name: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in rendered(name) if d.get("kind") == kind]


def _config_map(name: str) -> dict[str, Any]:
    (cm,) = [d for d in _by_kind(name, "ConfigMap") if d["metadata"]["name"] == "darkscope-config"]
    return cm


def _config(name: str) -> dict[str, str]:
    data: dict[str, str] = _config_map(name)["data"]
    return data


def _rate(name: str) -> int:
    return int(_config_map(name)["metadata"]["annotations"]["darkscope.io/sized-for-packets-per-second"])


def _containers(name: str) -> list[dict[str, Any]]:
    return [
        c
        for d in rendered(name)
        if d.get("kind") in {"Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob"}
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** ("KMGT".index(unit[0]) + 1 if unit else 0)


def _setting_names() -> set[str]:
    return {
        f"{cls.model_config.get('env_prefix', '')}{name}".upper()
        for cls in SETTINGS
        for name in cls.model_fields
    }


def test_every_manifest_file_is_used_by_its_kustomization() -> None:
    assert {"base", "overlays/single-node", "overlays/production"} <= set(KUSTOMIZATIONS)
    for name in KUSTOMIZATIONS:
        folder = K8S / name
        kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
        used = set(kust.get("resources", [])) | {p["path"] for p in kust.get("patches", []) if "path" in p}
        files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
        assert files <= used, f"{name}: not in its kustomization: {sorted(files - used)}"
        for doc in rendered(name):
            assert doc["apiVersion"] and doc["metadata"]["name"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_darkscope_variable_in_the_manifests_is_a_real_setting(name: str) -> None:
    names = _setting_names()
    used = {k for k in _config(name) if k.startswith("DARKSCOPE_")}
    used |= {
        e["name"] for c in _containers(name) for e in c.get("env", []) if e["name"].startswith("DARKSCOPE_")
    }
    assert used and used <= names, used - names


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_config_values_are_accepted_by_the_settings_classes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _config(name).items():
        monkeypatch.setenv(key, value)
    for cls in SETTINGS:
        cls()  # a value the settings reject fails here, not in a pod


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_secrets_reach_the_pods_only_through_secret_references(name: str) -> None:
    assert "DARKSCOPE_SINK_PASSWORD" not in _config(name)
    for c in _containers(name):
        for e in c.get("env", []):
            if e["name"] == "DARKSCOPE_SINK_PASSWORD":
                assert "secretKeyRef" in e["valueFrom"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_containers_run_real_darkscope_commands(name: str) -> None:
    commands = set(main.commands)  # type: ignore[attr-defined]
    args = [c["args"] for c in _containers(name)]
    assert {a[0] for a in args} == {"worker", "sink", "sensor"}
    assert all(a[0] in commands for a in args)
    for c in _containers(name):
        for arg in c["args"][1:]:
            if arg.startswith("$(") and arg.endswith(")"):
                assert arg[2:-1] in _config(name)  # Kubernetes expands it from the environment


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_topics_match_the_settings_and_the_partition_count(name: str) -> None:
    config = _config(name)
    topics = {d["metadata"]["name"]: d["spec"] for d in _by_kind(name, "KafkaTopic")}
    wanted = {v for k, v in config.items() if k.startswith("DARKSCOPE_TOPIC_")}
    assert set(topics) == wanted == set(TopicNames().all())
    partitions = int(config["DARKSCOPE_PARTITIONS"])
    assert {spec["partitions"] for spec in topics.values()} == {partitions}
    assert {spec["replicas"] for spec in topics.values()} == {int(config["DARKSCOPE_REPLICATION"])}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_workers_carry_the_rate_and_stay_within_the_partitions(name: str) -> None:
    config = _config(name)
    partitions = int(config["DARKSCOPE_PARTITIONS"])
    (scaled,) = _by_kind(name, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == config["DARKSCOPE_WORKER_APP_ID"]
    assert trigger["metadata"]["topic"] == config["DARKSCOPE_TOPIC_PACKETS"]
    assert trigger["metadata"]["bootstrapServers"] == config["DARKSCOPE_BOOTSTRAP"]
    assert scaled["spec"]["minReplicaCount"] * WORKER_PACKETS_PER_S >= _rate(name)
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    (worker,) = [
        d
        for d in _by_kind(name, "Deployment")
        if d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]
    ]
    assert "replicas" not in worker["spec"], (
        "KEDA owns the worker count; a count here fights it on every apply"
    )
    (sink,) = [d for d in _by_kind(name, "Deployment") if d["metadata"]["name"] == "darkscope-sink"]
    assert 1 <= sink["spec"]["replicas"] <= partitions


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_topic_replicas_fit_the_brokers(name: str) -> None:
    brokers = sum(
        p["spec"]["replicas"] for p in _by_kind(name, "KafkaNodePool") if "broker" in p["spec"]["roles"]
    )
    assert any("controller" in p["spec"]["roles"] for p in _by_kind(name, "KafkaNodePool"))
    replication = int(_config(name)["DARKSCOPE_REPLICATION"])
    (kafka,) = _by_kind(name, "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert replication <= brokers
    assert (
        config["offsets.topic.replication.factor"]
        == config["transaction.state.log.replication.factor"]
        == replication
    )
    # With replicas, one broker may be down (a rolling restart) and producers still write.
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == max(1, replication - 1)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kafka_size_caps_fit_the_broker_volumes(name: str) -> None:
    pools = [p for p in _by_kind(name, "KafkaNodePool") if "broker" in p["spec"]["roles"]]
    brokers = sum(p["spec"]["replicas"] for p in pools)
    smallest = min(_bytes(v["size"]) for p in pools for v in p["spec"]["storage"]["volumes"])
    caps = 0
    for topic in _by_kind(name, "KafkaTopic"):
        spec = topic["spec"]
        caps += spec["config"].get("retention.bytes", 0) * spec["partitions"] * spec["replicas"]
    assert caps / brokers <= KAFKA_CAPS_SHARE * smallest, f"{caps / brokers / 2**30:.0f} GiB a broker"
    for name_ in (_config(name)["DARKSCOPE_TOPIC_PACKETS"], _config(name)["DARKSCOPE_TOPIC_ENRICHED"]):
        (topic,) = [t for t in _by_kind(name, "KafkaTopic") if t["metadata"]["name"] == name_]
        assert "retention.bytes" in topic["spec"]["config"], f"{name_} has no size cap"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_clickhouse_holds_the_raw_packets_for_the_ttl(name: str) -> None:
    (chi,) = _by_kind(name, "ClickHouseInstallation")
    templates = chi["spec"]["templates"]
    defaults = chi["spec"]["defaults"]["templates"]
    assert defaults["podTemplate"] in {t["name"] for t in templates["podTemplates"]}
    (data,) = [
        t for t in templates["volumeClaimTemplates"] if t["name"] == defaults["dataVolumeClaimTemplate"]
    ]
    assert data.get("reclaimPolicy") == "Retain"
    ttl_days = int(_config(name)["DARKSCOPE_SINK_TTL_DAYS"])
    assert ttl_days > 0, "raw packets kept for ever outgrow any volume"
    needed = _rate(name) * CLICKHOUSE_BYTES_PER_PACKET * 86_400 * ttl_days * CLICKHOUSE_HEADROOM
    size = _bytes(data["spec"]["resources"]["requests"]["storage"])
    assert size >= needed, f"{size / 2**40:.1f} TiB < {needed / 2**40:.1f} TiB"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kafka_on_kubernetes_is_the_version_the_tests_run_against(name: str) -> None:
    pom = (REPO / "infra" / "kafka" / "pom.xml").read_text()
    (tested,) = re.findall(r"<kafka.version>([^<]+)</kafka.version>", pom)
    (kafka,) = _by_kind(name, "Kafka")
    assert kafka["spec"]["kafka"]["version"] == tested


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_bootstrap_and_dsn_name_the_services_the_operators_create(name: str) -> None:
    config = _config(name)
    (kafka,) = _by_kind(name, "Kafka")
    assert config["DARKSCOPE_BOOTSTRAP"] == f"{kafka['metadata']['name']}-kafka-bootstrap:9092"
    (chi,) = _by_kind(name, "ClickHouseInstallation")
    assert f"@clickhouse-{chi['metadata']['name']}:8123/" in config["DARKSCOPE_SINK_DSN"]
    user = config["DARKSCOPE_SINK_DSN"].split("://", 1)[1].split("@", 1)[0]
    namespace = chi["metadata"]["namespace"]
    secret = chi["spec"]["configuration"]["users"][f"{user}/k8s_secret_password"]
    (ref,) = [
        d for d in _by_kind(name, "Secret") if f"{namespace}/{d['metadata']['name']}/password" == secret
    ]
    assert "password" in ref["stringData"]
