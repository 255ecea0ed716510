"""`make k8s-dryrun`: every kustomization applied with ``--dry-run=server`` to a real API server.

A kube-apiserver and a kubectl built from the k8s.io/kubernetes Go module (the wrapper module
in ``apiserver/``; about 5 minutes and 2 GB of Go build cache the first time, then cached in
``$DARKSCOPE_K8S_CACHE/bin``) run against Debian's etcd, both on 127.0.0.1 only. The CRDs are
created as the operators ship them (Strimzi's v1-only CRDs, KEDA's ScaledObject) plus a
stand-in for ClickHouseInstallation (``crds/``; no registry serves the real one), the
namespace is created for real (a server-side dry run cannot create the namespace its other
resources land in), then ``kubectl apply --dry-run=server -k`` runs on each kustomization:
the server's own defaulting, validation (strict field validation), CRD structural schemas
and admission see every resource, and nothing is stored. Everything is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import check
import pins
import schemafolder

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "apiserver"
STAND_INS = HERE / "crds"
KUBERNETES = "v1.35.4"  # the k8s.io/kubernetes version in apiserver/go.mod
NAMESPACE = "darkscope"
# A throwaway token of a throwaway server bound to 127.0.0.1.
TOKEN = "darkscope-dryrun"


class DryRunError(RuntimeError):
    """The dry run could not be set up (a build, etcd, the API server not answering)."""


def say(line: str) -> None:
    """One line for the person running the dry run."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _binaries() -> tuple[Path, Path, bool]:
    """kube-apiserver and kubectl of KUBERNETES, built into the cache unless already there."""
    bin_dir = pins.cache_dir() / "bin"
    apiserver, kubectl = bin_dir / f"kube-apiserver-{KUBERNETES}", bin_dir / f"kubectl-{KUBERNETES}"
    if apiserver.exists() and kubectl.exists():
        return apiserver, kubectl, False
    if shutil.which("go") is None:
        raise DryRunError("`go` is not installed: it builds kube-apiserver and kubectl")
    bin_dir.mkdir(parents=True, exist_ok=True)
    minor = KUBERNETES.split(".")[1]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={KUBERNETES}", f"-X {pkg}.gitMajor=1", f"-X {pkg}.gitMinor={minor}"]
    say(f"building kube-apiserver and kubectl {KUBERNETES} from the k8s.io/kubernetes module (~5 min once)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=bin_dir) as tmp:
        cmd = ["go", "build", "-trimpath", "-o", tmp + "/", "-ldflags", " ".join(flags)]
        cmd += ["k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"]
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-buildvcs=false"}
        proc = subprocess.run(cmd, cwd=WRAPPER, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DryRunError(f"go build failed:\n{proc.stderr[-3000:]}")
        os.replace(Path(tmp) / "kube-apiserver", apiserver)
        os.replace(Path(tmp) / "kubectl", kubectl)
    say(f"  built in {time.monotonic() - started:.0f} s: {apiserver.parent}")
    return apiserver, kubectl, True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until ``url`` answers 200 (TLS unchecked: the server's own self-signed certificate)."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DryRunError(f"{what} exited ({proc.returncode}); its log ends:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise DryRunError(f"{what} did not answer {url} within {timeout:.0f} s; its log ends:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


@contextmanager
def _process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` running with its output in ``log``; stopped (SIGTERM, then SIGKILL) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _service_account_key(work: Path) -> Path:
    key = work / "sa.key"
    cmd = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)]
    if shutil.which("openssl") is None:
        raise DryRunError("`openssl` is not installed: it makes the service account signing key")
    subprocess.run(cmd, check=True, capture_output=True)
    return key


def _kubeconfig(work: Path, port: int) -> Path:
    path = work / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dryrun\n"
        f"clusters:\n- name: dryrun\n  cluster:\n    server: https://127.0.0.1:{port}\n"
        "    insecure-skip-tls-verify: true\n"
        f"users:\n- name: dryrun\n  user:\n    token: {TOKEN}\n"
        "contexts:\n- name: dryrun\n  context: {cluster: dryrun, user: dryrun}\n"
    )
    return path


def _kubectl(kubectl: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kubectl), "--kubeconfig", str(config), *args], capture_output=True, text=True, check=False
    )


def _crd_files() -> list[Path]:
    sources = pins.fetch()
    folder, _ = schemafolder.build(sources)
    return [*sorted((folder / "crds").glob("*.yaml")), *sorted(STAND_INS.glob("*.yaml"))]


def run() -> int:
    """Start etcd and the API server, create the CRDs, dry-run every kustomization; exit status."""
    started = time.monotonic()
    try:
        crds = _crd_files()
        apiserver, kubectl, _ = _binaries()
    except (pins.FetchError, DryRunError) as exc:
        say(f"k8s-dryrun: {exc}")
        return 2
    etcd = shutil.which("etcd")
    if etcd is None:
        say("k8s-dryrun: `etcd` is not installed (Debian's etcd-server; `make k8s-dryrun` installs it)")
        return 2
    with tempfile.TemporaryDirectory(prefix="darkscope-k8s-dryrun-") as tmp:
        work = Path(tmp)
        try:
            return _run_servers(work, Path(etcd), apiserver, kubectl, crds, started)
        except DryRunError as exc:
            say(f"k8s-dryrun: {exc}")
            return 2


def _run_servers(
    work: Path, etcd: Path, apiserver: Path, kubectl: Path, crds: list[Path], started: float
) -> int:
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_cmd = [
        str(etcd), "--name", "dryrun", "--data-dir", str(work / "etcd"),
        "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"dryrun=http://127.0.0.1:{peer_port}",
    ]  # fmt: skip
    (work / "tokens.csv").write_text(f'{TOKEN},darkscope-dryrun,1,"system:masters"\n')
    key = _service_account_key(work)
    api_cmd = [
        str(apiserver), "--bind-address=127.0.0.1", f"--secure-port={api_port}",
        "--advertise-address=127.0.0.1", f"--etcd-servers={etcd_url}",
        f"--cert-dir={work / 'certs'}", f"--token-auth-file={work / 'tokens.csv'}",
        "--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/24",
        "--service-account-issuer=https://kubernetes.default.svc", "--api-audiences=https://kubernetes.default.svc",
        f"--service-account-key-file={key}", f"--service-account-signing-key-file={key}",
    ]  # fmt: skip
    with _process(etcd_cmd, work / "etcd.log") as etcd_proc:
        _wait_etcd(etcd_url, etcd_proc, work / "etcd.log")
        with _process(api_cmd, work / "apiserver.log") as api_proc:
            _wait(f"https://127.0.0.1:{api_port}/readyz", "kube-apiserver", api_proc, work / "apiserver.log")
            say(
                f"k8s-dryrun: kube-apiserver {KUBERNETES} on 127.0.0.1:{api_port}, "
                f"etcd {_etcd_version(etcd)} on 127.0.0.1:{etcd_port} "
                f"(ready {time.monotonic() - started:.0f} s after start)"
            )
            return _apply(kubectl, _kubeconfig(work, api_port), crds, started)


def _wait_etcd(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DryRunError(f"etcd exited ({proc.returncode}); its log ends:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if b'"true"' in answer.read():
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise DryRunError(f"etcd did not answer within 30 s; its log ends:\n{_tail(log)}")


def _etcd_version(etcd: Path) -> str:
    out = subprocess.run([str(etcd), "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[2] if out.startswith("etcd Version:") else "?"


def _apply(kubectl: Path, config: Path, crds: list[Path], started: float) -> int:
    args = ["create"]
    for crd in crds:
        args += ["-f", str(crd)]
    created = _kubectl(kubectl, config, *args)  # create: Strimzi's Kafka CRD is too big for apply
    if created.returncode != 0:
        raise DryRunError(f"creating the CRDs failed:\n{created.stderr}")
    names = [line.split()[0] for line in created.stdout.splitlines()]
    waited = _kubectl(kubectl, config, "wait", "--for=condition=Established", "--timeout=60s", *names)
    if waited.returncode != 0:
        raise DryRunError(f"the CRDs were not established:\n{waited.stderr}")
    say(f"  CRDs created: {', '.join(n.split('/')[-1] for n in names)}")
    namespace = _kubectl(kubectl, config, "create", "namespace", NAMESPACE, "--save-config")
    if namespace.returncode != 0:
        raise DryRunError(f"creating namespace {NAMESPACE} failed:\n{namespace.stderr}")
    failed = 0
    for folder in check.kustomizations():
        proc = _kubectl(kubectl, config, "apply", "--dry-run=server", "-k", str(folder))
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        label = str(folder.relative_to(check.REPO))
        if proc.returncode == 0:
            say(f"  {label}: {len(lines)} resources accepted (server dry run)")
            for line in proc.stderr.strip().splitlines():
                say(f"    {line}")  # the server's warnings
        else:
            failed += 1
            say(f"  {label}: REJECTED ({len(lines)} accepted)")
            for line in proc.stderr.strip().splitlines():
                say(f"    {line}")
    failed += _control(kubectl, config)
    verdict = "every kustomization accepted, every broken copy rejected"
    if failed:
        verdict = f"{failed} check(s) FAILED"
    say(f"k8s-dryrun: {verdict} ({time.monotonic() - started:.0f} s)")
    return 0 if failed == 0 else 1


CONTROLS = (
    (
        'base with `listenrs` and partitions "8"',
        (("    listeners:", "    listenrs:", 1), ("  partitions: 8", '  partitions: "8"', 1)),
    ),
    (
        "base on kafka.strimzi.io/v1beta2",
        (("apiVersion: kafka.strimzi.io/v1\n", "apiVersion: kafka.strimzi.io/v1beta2\n", -1),),
    ),
)


def _control(kubectl: Path, config: Path) -> int:
    """Broken copies of the base must be rejected (the server validates): how many were not."""
    failed = 0
    for label, edits in CONTROLS:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "base"
            shutil.copytree(check.K8S / "base", folder)
            kafka = folder / "kafka.yaml"
            text = kafka.read_text()
            for old, new, count in edits:
                text = text.replace(old, new, count)
            kafka.write_text(text)
            proc = _kubectl(kubectl, config, "apply", "--dry-run=server", "-k", str(folder))
        if proc.returncode == 0:
            failed += 1
            say(f"  control: {label} was ACCEPTED: the server does not check what it should")
            continue
        say(f"  control: {label} rejected, as it must be:")
        lines = [line for line in proc.stderr.strip().splitlines() if "ensure CRDs are installed" not in line]
        for line in lines[:3]:
            say(f"    {line}")
        if len(lines) > 3:
            say(f"    ... and {len(lines) - 3} more")
    return failed


if __name__ == "__main__":
    sys.exit(run())
