"""`make k8s-check` (infra/k8s-check/check.py): the manifests pass kubeconform -strict against
Kubernetes' and the operators' schemas, and what those schemas forbid is rejected.

The check fetches its pinned tools and schemas into ~/.cache/darkscope/k8s on first use
(network: the Go module proxy, PyPI, Maven Central); `make test` runs `make k8s-check`
first, so here they are cached.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "infra" / "k8s-check" / "check.py"
BASE = REPO / "infra" / "k8s" / "base"


def _check(*paths: Path) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, str(CHECK), "--quiet", *map(str, paths)], capture_output=True, text=True, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def _broken_base(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "base"
    shutil.copytree(BASE, folder)
    kafka = folder / "kafka.yaml"
    text = kafka.read_text()
    assert old in text
    kafka.write_text(text.replace(old, new, 1))
    return folder


def test_every_kustomization_is_valid_against_the_operators_schemas() -> None:
    code, out = _check()
    assert code == 0, out
    assert "all valid" in out


def test_a_misspelt_field_and_a_wrong_type_are_both_rejected(tmp_path: Path) -> None:
    folder = _broken_base(tmp_path, "    listeners:", "    listenrs:")
    kafka = folder / "kafka.yaml"
    kafka.write_text(kafka.read_text().replace("  partitions: 8", '  partitions: "8"', 1))
    code, out = _check(folder)
    assert code == 1, out
    assert "Kafka/darkscope (kafka.strimzi.io/v1): /spec/kafka: missing property 'listeners'" in out
    assert "additional properties 'listenrs' not allowed" in out
    assert "KafkaNodePool" not in out.split("INVALID", 1)[1]  # only the broken resources fail
    assert (
        "KafkaTopic/darkscope.packets (kafka.strimzi.io/v1): /spec/partitions: got string, want integer"
        in out
    )
    assert "2 INVALID" in out


def test_an_api_version_strimzi_no_longer_serves_is_rejected(tmp_path: Path) -> None:
    folder = _broken_base(
        tmp_path,
        "apiVersion: kafka.strimzi.io/v1\nkind: Kafka\n",
        "apiVersion: kafka.strimzi.io/v1beta2\nkind: Kafka\n",
    )
    code, out = _check(folder)
    assert code == 1, out
    assert "Kafka/darkscope (kafka.strimzi.io/v1beta2): could not find schema for Kafka" in out


def test_a_wrong_field_in_a_built_in_kind_and_in_our_clickhouse_schema_is_rejected(tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec:\n  replicas: two\n  selector: {matchLabels: {a: b}}\n"
        "  template:\n    metadata: {labels: {a: b}}\n"
        "    spec: {containers: [{name: c, image: i, resource: {}}]}\n"
        "---\napiVersion: clickhouse.altinity.com/v1\nkind: ClickHouseInstallation\nmetadata: {name: c}\n"
        "spec: {configuration: {clusters: [{name: c, layout: {shardCount: 1}}]}}\n"
    )
    code, out = _check(manifest)
    assert code == 1, out
    assert "/spec/replicas: got string, want null or integer" in out
    assert "additional properties 'resource' not allowed" in out
    assert "additional properties 'shardCount' not allowed" in out
