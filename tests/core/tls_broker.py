"""A local KRaft broker with a SASL_SSL (SCRAM) listener for the TLS tests: a CA and a server
certificate made with the openssl CLI, the broker started from the same jars as the default one
(:func:`core.broker.start` with a :class:`core.broker.SaslSslListener`) on free ports, and SCRAM
users created through the admin API on its PLAINTEXT listener."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from core import broker as broker_mod
from core.settings import BrokerSettings

__all__ = ["TlsBroker", "create_scram_user", "make_certificates", "start_tls_broker"]


@dataclass(frozen=True)
class TlsBroker:
    """A running broker: its PLAINTEXT and SASL_SSL addresses, the CA file clients trust."""

    settings: BrokerSettings
    plaintext: str
    sasl_ssl: str
    ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 / localhost: (CA file, broker keystore
    PEM holding the unencrypted PKCS#8 key and the chain)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl CLI is needed to make the test certificates")
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=darkscope test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip
    keystore = folder / "broker.pem"
    keystore.write_text(
        (folder / "server.key").read_text()
        + (folder / "server.crt").read_text()
        + (folder / "ca.pem").read_text()
    )
    return folder / "ca.pem", keystore


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_tls_broker(folder: Path) -> TlsBroker:
    """Certificates, then a broker with PLAINTEXT and SASL_SSL listeners on free ports."""
    ca, keystore = make_certificates(folder / "certs")
    plain, controller, secure = _free_ports(3)
    settings = BrokerSettings(port=plain, controller_port=controller, data_dir=folder / "kafka", heap="512M")
    broker_mod.start(settings, broker_mod.SaslSslListener(secure, keystore))
    return TlsBroker(settings, f"127.0.0.1:{plain}", f"127.0.0.1:{secure}", ca)


def create_scram_user(plaintext: str, user: str, password: str, mechanism: str = "SCRAM-SHA-512") -> None:
    """Create (or update) a SCRAM user through the admin API (AlterUserScramCredentials)."""
    admin = AdminClient({"bootstrap.servers": plaintext})
    mech = ScramMechanism.SCRAM_SHA_512 if mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(mech, 8192), password.encode())
    for fut in admin.alter_user_scram_credentials([upsert]).values():
        fut.result(30)
