"""The pinned tools and schema sources of the Kubernetes checks, fetched once into a cache.

Each comes from a package registry through its own client, pinned by version (and by hash
where the client does not check one): kustomize and kubeconform by ``go install`` through
the Go module proxy; kubeconform's CRD converter and KEDA's CRDs from their Go module sources;
the JSON schemas of the built-in kinds from the PyPI wheel kubernetes-validate; Strimzi's
CRDs from the Maven artifact io.strimzi:api, classifier ``tests``. The cache is
``$DARKSCOPE_K8S_CACHE`` (default ``~/.cache/darkscope/k8s``); once filled, nothing here
touches the network. Files land under a temporary name first, so an interrupted fetch never
leaves half a file that a later run would take as cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The pins. Kustomize v5.8.3 needs Go 1.27; v5.8.2 builds with the Go 1.26 of these machines.
KUSTOMIZE = ("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.2")
KUBECONFORM = ("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
CONVERTER_MODULE = ("github.com/yannh/kubeconform", "v0.8.0", "scripts/openapi2jsonschema.py")
KEDA_MODULE = ("github.com/kedacore/keda/v2", "v2.20.2", "config/crd/bases/keda.sh_scaledobjects.yaml")
K8S_SCHEMAS_WHEEL = (
    "kubernetes-validate",
    "1.37.0",
    "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9",
)
# The wheel holds the schemas of every Kubernetes minor from 1.25 to 1.37: we check against
# the one the dry run's API server is built from (infra/k8s-check/apiserver/go.mod).
KUBERNETES_VERSION = "1.35.0"
# Strimzi's api artifacts from 0.52/1.0 on carry no CRD YAML; 0.51.0's tests jar has crds/v1/,
# the CRDs that serve kafka.strimzi.io/v1 only, as Strimzi >= 1.0 installs them.
STRIMZI_JAR = (
    "io.strimzi:api:0.51.0:jar:tests",
    "b99f69303dc507ca505b74345d93f5260621bb084b8b79447f726e54b6e66a1d",
)
STRIMZI_VERSION = "0.51.0"
STRIMZI_CRDS = (
    "crds/v1/040-Crd-kafka.yaml",
    "crds/v1/043-Crd-kafkatopic.yaml",
    "crds/v1/045-Crd-kafkanodepool.yaml",
)


class FetchError(RuntimeError):
    """A pinned tool or file could not be fetched; the message says what and how to fix it."""


@dataclass(frozen=True)
class Sources:
    """Where the cached tools and schema sources are, and which were fetched by this run."""

    kustomize: Path
    kubeconform: Path
    converter: Path
    keda_crd: Path
    k8s_wheel: Path
    strimzi_jar: Path
    fetched: tuple[str, ...]


def cache_dir() -> Path:
    """The cache folder: $DARKSCOPE_K8S_CACHE, or ~/.cache/darkscope/k8s."""
    given = os.environ.get("DARKSCOPE_K8S_CACHE")
    return Path(given).resolve() if given else Path.home() / ".cache" / "darkscope" / "k8s"


def pins_digest() -> str:
    """A short digest of every pin: a cached schema folder is rebuilt when a pin moves."""
    pins = [KUSTOMIZE, KUBECONFORM, CONVERTER_MODULE, KEDA_MODULE, K8S_SCHEMAS_WHEEL, STRIMZI_JAR]
    text = json.dumps([pins, KUBERNETES_VERSION, STRIMZI_CRDS])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _run(
    cmd: list[str], what: str, hint: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> str:
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise FetchError(f"cannot fetch {what}: `{cmd[0]}` is not installed ({hint})")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise FetchError(f"cannot fetch {what}: `{' '.join(cmd)}` failed ({hint}):\n{tail}")
    return proc.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _go_env() -> dict[str, str]:
    # No toolchain switch (GOTOOLCHAIN=local): the pins build with the Go on the machine.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}


def _go_install(cache: Path, tool: tuple[str, str, str], fetched: list[str]) -> Path:
    name, package, version = tool
    target = cache / "bin" / f"{name}-{version}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        env = {**_go_env(), "GOBIN": tmp}
        _run(
            ["go", "install", f"{package}@{version}"],
            f"{name} {version}",
            "Go >= 1.26 and the Go module proxy",
            cache,
            env,
        )
        os.replace(Path(tmp) / name, target)
    fetched.append(f"{name} {version} (go install)")
    return target


def _go_module_file(cache: Path, module: tuple[str, str, str], fetched: list[str]) -> Path:
    path, version, inner = module
    target = cache / "src" / f"{path.replace('/', '_')}@{version}" / Path(inner).name
    if target.exists():
        return target
    out = _run(
        ["go", "mod", "download", "-json", f"{path}@{version}"],
        f"{path}@{version}",
        "the Go module proxy",
        cache,
        _go_env(),
    )
    source = Path(json.loads(out)["Dir"]) / inner
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    fetched.append(f"{inner} from {path}@{version} (go mod download)")
    return target


def _checked(path: Path, sha256: str, what: str) -> Path:
    if _sha256(path) != sha256:
        path.unlink()
        raise FetchError(f"{what}: sha256 of the download is not the pinned {sha256}")
    return path


def _wheel(cache: Path, fetched: list[str]) -> Path:
    name, version, sha256 = K8S_SCHEMAS_WHEEL
    target = cache / "src" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps"]
        _run([*cmd, "--quiet", "--dest", tmp, f"{name}=={version}"], f"{name} {version}", "PyPI", cache)
        (wheel,) = Path(tmp).glob("*.whl")
        os.replace(_checked(wheel, sha256, f"{name} {version}"), target)
    fetched.append(f"{name} {version} (pip download)")
    return target


def _maven(cache: Path, fetched: list[str]) -> Path:
    coords, sha256 = STRIMZI_JAR
    group, artifact, version, _, classifier = coords.split(":")
    target = cache / "src" / f"{artifact}-{version}-{classifier}.jar"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={coords}", f"-DoutputDirectory={tmp}"]
        _run(cmd, coords, "Maven (make sysdeps installs it) and Maven Central", cache)
        (jar,) = Path(tmp).glob("*.jar")
        os.replace(_checked(jar, sha256, coords), target)
    fetched.append(f"{group}:{artifact}:{version}:{classifier} (mvn dependency:copy)")
    return target


def fetch() -> Sources:
    """Every pinned tool and schema source, from the cache or fetched into it now."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    fetched: list[str] = []
    return Sources(
        kustomize=_go_install(cache, KUSTOMIZE, fetched),
        kubeconform=_go_install(cache, KUBECONFORM, fetched),
        converter=_go_module_file(cache, CONVERTER_MODULE, fetched),
        keda_crd=_go_module_file(cache, KEDA_MODULE, fetched),
        k8s_wheel=_wheel(cache, fetched),
        strimzi_jar=_maven(cache, fetched),
        fetched=tuple(fetched),
    )
