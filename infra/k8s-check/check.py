"""Checks the Kubernetes manifests against Kubernetes' and the operators' own schemas.

    python infra/k8s-check/check.py              # every kustomization under infra/k8s
    python infra/k8s-check/check.py PATH ...     # kustomization folders or manifest files
    python infra/k8s-check/check.py --render DIR # print what kustomize renders for DIR

Each kustomization is rendered with the pinned kustomize (the output is kept in
``.darkscope/k8s/``) and every resource is validated by the pinned kubeconform in strict
mode: an unknown field, a wrong type, or a kind or API version without a schema (such as an
API version the operator no longer serves) fails. Tools and schemas are fetched on first use
(pins.py, schemafolder.py). Exit status: 0 all valid, 1 something invalid, 2 could not check.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pins
import schemafolder

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
RENDERED = REPO / ".darkscope" / "k8s"
_AT = re.compile(r"at '([^']*)': (.*?)(?=\s+- at '|$)")


def say(line: str = "") -> None:
    """One line for the person running the check."""
    sys.stdout.write(line + "\n")


@dataclass(frozen=True)
class Checked:
    """kubeconform's verdict on the resources of one kustomization or file."""

    label: str
    kinds: Counter[str]
    problems: tuple[str, ...]


def kustomizations(root: Path = K8S) -> list[Path]:
    """Every folder under ``root`` that holds a kustomization, sorted."""
    return sorted(p.parent for p in root.rglob("kustomization.yaml"))


def render(kustomize: Path, folder: Path) -> str:
    """The YAML that kustomize builds from ``folder``; CheckError when it cannot."""
    proc = subprocess.run([str(kustomize), "build", str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CheckError(f"kustomize build {_rel(folder)} failed:\n{proc.stderr.strip()}")
    return proc.stdout


class CheckError(RuntimeError):
    """The check itself could not run (as opposed to a manifest found invalid)."""


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def validate(kubeconform: Path, schema_dir: Path, files: list[Path]) -> list[dict[str, Any]]:
    """kubeconform's result for every resource in ``files`` (strict, our schemas only)."""
    location = f"{schema_dir}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    cmd = [str(kubeconform), "-strict", "-verbose", "-output", "json", "-schema-location", location]
    proc = subprocess.run([*cmd, *map(str, files)], capture_output=True, text=True, check=False)
    try:
        resources: list[dict[str, Any]] = json.loads(proc.stdout)["resources"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise CheckError(f"kubeconform gave no result ({exc}):\n{proc.stdout}{proc.stderr}") from exc
    return resources


def _verdicts(label: str, resources: list[dict[str, Any]]) -> Checked:
    kinds: Counter[str] = Counter()
    problems = []
    for r in resources:
        kinds[r.get("kind") or "?"] += 1
        if r["status"] == "statusValid":
            continue
        where = f"{r.get('kind')}/{r.get('name')} ({r.get('version')})"
        msg = str(r.get("msg"))
        # kubeconform's validationErrors stop at the first level ("/spec: validation failed");
        # its message lists every leaf: keep those.
        details = [f"{path or '/'}: {text}" for path, text in _AT.findall(msg) if text != "validation failed"]
        if msg.startswith("could not find schema"):
            msg += " at this apiVersion (one its operator no longer serves, or a kind k8s-check lacks)"
        problems.append(f"{where}: " + ("; ".join(details) if details else msg))
    return Checked(label, kinds, tuple(problems))


def check(paths: list[Path], quiet: bool = False) -> int:
    """Render and validate ``paths``; print what was checked against what; the exit status."""
    started = time.monotonic()
    try:
        sources = pins.fetch()
        schema_dir, built = schemafolder.build(sources)
    except pins.FetchError as exc:
        say(f"k8s-check: {exc}")
        return 2
    if not quiet:
        _print_sources(sources, schema_dir, built)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for path in paths:
                target = path
                if path.is_dir():
                    # The project's own renders are kept for a look; others (tests) are not.
                    inside = path.resolve().is_relative_to(K8S)
                    folder = RENDERED if inside else Path(tmp)
                    folder.mkdir(parents=True, exist_ok=True)
                    target = folder / (_rel(path).replace("/", "_").strip("_") + ".yaml")
                    target.write_text(render(sources.kustomize, path))
                results.append(_verdicts(_rel(path), validate(sources.kubeconform, schema_dir, [target])))
    except CheckError as exc:
        say(f"k8s-check: {exc}")
        return 2
    width = max(len(r.label) for r in results)
    for r in results:
        total = sum(r.kinds.values())
        state = f"{total - len(r.problems)} of {total} resources valid"
        say(f"  {r.label:<{width}}  {state}: " + ", ".join(f"{k} {n}" for k, n in sorted(r.kinds.items())))
        for problem in r.problems:
            say(f"    INVALID {problem}")
    bad = sum(len(r.problems) for r in results)
    total = sum(sum(r.kinds.values()) for r in results)
    verdict = "all valid" if bad == 0 else f"{bad} INVALID"
    dirs = sum(p.is_dir() for p in paths)
    counts = ((dirs, "kustomization(s)"), (len(paths) - dirs, "file(s)"))
    what = " and ".join(f"{n} {noun}" for n, noun in counts if n)
    say(
        f"k8s-check: {total} resources in {what}, {verdict} (kubeconform -strict, "
        f"{time.monotonic() - started:.1f} s)"
    )
    return 0 if bad == 0 and total > 0 else 1


def _print_sources(sources: pins.Sources, schema_dir: Path, built: bool) -> None:
    say(f"k8s-check: tools and schemas in {pins.cache_dir()}")
    for line in sources.fetched:
        say(f"  fetched {line}")
    if built:
        say(f"  built {schema_dir.name}")
    say(f"  kustomize {pins.KUSTOMIZE[2]}, kubeconform {pins.KUBECONFORM[2]}")
    say(
        f"  built-in kinds: Kubernetes v{pins.KUBERNETES_VERSION} (kubernetes-validate "
        f"{pins.K8S_SCHEMAS_WHEEL[1]}, strict, definitions inlined)"
    )
    say(
        f"  Kafka, KafkaNodePool, KafkaTopic: Strimzi {pins.STRIMZI_VERSION} CRDs serving only "
        "kafka.strimzi.io/v1, as Strimzi >= 1.0 does"
    )
    say(f"  ScaledObject: KEDA {pins.KEDA_MODULE[1]} CRD (keda.sh/v1alpha1)")
    say(
        "  ClickHouseInstallation: darkscope's OWN schema of the fields it uses "
        "(infra/k8s-check/clickhouseinstallation-clickhouse-v1.json): no registry serves the Altinity CRD"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: check paths (default every kustomization), or render one."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", type=Path, help="kustomization folders or manifest files")
    parser.add_argument("--render", type=Path, metavar="DIR", help="print the rendered kustomization DIR")
    parser.add_argument("--quiet", action="store_true", help="do not list the tools and schemas")
    args = parser.parse_args(argv)
    if args.render:
        try:
            sys.stdout.write(render(pins.fetch().kustomize, args.render))
        except (pins.FetchError, CheckError) as exc:
            say(f"k8s-check: {exc}")
            return 2
        return 0
    return check(args.paths or kustomizations(), quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
