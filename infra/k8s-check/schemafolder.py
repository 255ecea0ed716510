"""The folder of JSON schemas that kubeconform reads, built once from the cached sources.

One file per kind, named as kubeconform looks it up (``{kind}{-group}-{version}.json``, lower
case, the group cut at its first dot):

- built-in kinds: kubernetes-validate's strict schemas of ``pins.KUBERNETES_VERSION``. They
  point at a shared ``_definitions.json`` through an absolute ``$ref`` that kubeconform cannot
  resolve in a local folder ("could not find schema"), so each kind's file here gets the
  definitions it reaches inlined under ``$defs`` and its references rewritten to ``#/$defs/``;
- Strimzi's and KEDA's CRDs: converted by kubeconform's own ``openapi2jsonschema.py`` with
  ``additionalProperties: false`` at the root too, so that a misspelt top-level key fails as a
  misspelt nested one does;
- ClickHouseInstallation: no registry serves the Altinity operator's CRD, so
  ``clickhouseinstallation-clickhouse-v1.json`` beside this file is darkscope's own schema of
  the fields the manifests use (the layout of the operator's CRD, release 0.25.6); its pod and
  volume claim templates are checked as the built-in PodSpec and PersistentVolumeClaimSpec.

The CRD YAML files go to ``crds/`` in the same folder, for the dry run's API server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pins

HERE = Path(__file__).resolve().parent
OWN_SCHEMAS = (HERE / "clickhouseinstallation-clickhouse-v1.json",)
_EXTERNAL_REF = "/api/_definitions.json#/$defs/"
_LOCAL_REF = "#/$defs/"


def _rewrite_refs(node: Any, found: set[str]) -> Any:
    """A copy of ``node`` with definition references made local; their names go to ``found``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and "#/$defs/" in value:
                name = value.split("#/$defs/", 1)[1]
                found.add(name)
                out[key] = _LOCAL_REF + name
            else:
                out[key] = _rewrite_refs(value, found)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, found) for v in node]
    return node


class Definitions:
    """The shared definitions of the built-in kinds, each with the names it refers to."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.body: dict[str, Any] = {}
        self.deps: dict[str, set[str]] = {}
        for name, schema in defs.items():
            found: set[str] = set()
            self.body[name] = _rewrite_refs(schema, found)
            self.deps[name] = found

    def inline(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``schema`` standing alone: local references, and every definition it reaches."""
        found: set[str] = set()
        out = _rewrite_refs(schema, found)
        reached: set[str] = set()
        todo = list(found)
        while todo:
            name = todo.pop()
            if name in reached:
                continue
            if name not in self.body:
                raise KeyError(f"definition {name} not found among the built-in kinds' definitions")
            reached.add(name)
            todo.extend(self.deps[name] - reached)
        out.pop("$id", None)
        out["$defs"] = {name: self.body[name] for name in sorted(reached)}
        return out


def _builtin_members(wheel: zipfile.ZipFile) -> Iterator[tuple[str, dict[str, Any]]]:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{pins.KUBERNETES_VERSION}-local-strict/"
    for member in wheel.namelist():
        name = member.removeprefix(prefix)
        if member.startswith(prefix) and name.endswith(".json") and "/" not in name:
            yield name, json.loads(wheel.read(member))


def _builtins(wheel_path: Path, out: Path) -> Definitions:
    with zipfile.ZipFile(wheel_path) as wheel:
        members = dict(_builtin_members(wheel))
    defs = Definitions(members.pop("_definitions.json")["$defs"])
    for name, schema in members.items():
        # Only the kinds (a file whose `kind` is fixed) are looked up; the rest are parts.
        if "enum" in schema.get("properties", {}).get("kind", {}):
            (out / name).write_text(json.dumps(defs.inline(schema)))
    return defs


def _crds(sources: pins.Sources, out: Path) -> list[Path]:
    crds = out / "crds"
    crds.mkdir()
    with zipfile.ZipFile(sources.strimzi_jar) as jar:
        for member in pins.STRIMZI_CRDS:
            (crds / f"strimzi-{Path(member).name}").write_bytes(jar.read(member))
    shutil.copyfile(sources.keda_crd, crds / f"keda-{sources.keda_crd.name}")
    files = sorted(crds.glob("*.yaml"))
    env = {
        **os.environ,
        "FILENAME_FORMAT": "{kind}-{group}-{version}",
        "DENY_ROOT_ADDITIONAL_PROPERTIES": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(sources.converter), *map(str, files)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise pins.FetchError(f"openapi2jsonschema.py failed on the CRDs:\n{proc.stdout}{proc.stderr}")
    return files


def _own(defs: Definitions, out: Path) -> None:
    for path in OWN_SCHEMAS:
        (out / path.name).write_text(json.dumps(defs.inline(json.loads(path.read_text()))))


def _digest() -> str:
    text = b"".join(p.read_bytes() for p in (*OWN_SCHEMAS, Path(__file__)))
    return f"{pins.pins_digest()}-{hashlib.sha256(text).hexdigest()[:10]}"


def build(sources: pins.Sources) -> tuple[Path, bool]:
    """The schema folder for these sources, and whether this run built it (else cached)."""
    cache = pins.cache_dir()
    target = cache / f"schemas-{_digest()}"
    if target.exists():
        return target, False
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".schemas-"))
    try:
        defs = _builtins(sources.k8s_wheel, tmp)
        _crds(sources, tmp)
        _own(defs, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.exists():  # else a concurrent run built the same folder first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, True
