"""`pj-master --tls`: a fresh self-signed certificate for this run alone.

Clients pin it (DIR/tls.crt is their only trusted root), so no CA is involved and a certificate of
another run is refused. ECDSA P-256, valid for the advertised host name, the host's own names,
127.0.0.1 and localhost.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pj.common import perms
from pj.common.workdir import TLS_CERT_FILE, TLS_KEY_FILE


def make_cert(hosts: list[str]) -> tuple[bytes, bytes, str]:
    """(certificate PEM, key PEM, SHA-256 fingerprint as hex) for ``hosts`` (names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for h in [*hosts, "localhost", "127.0.0.1"]:
        if not h or h in seen:
            continue
        seen.add(h)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pj-master")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem, cert.fingerprint(hashes.SHA256()).hex()


def write_cert(workdir: Path, hosts: list[str]) -> tuple[bytes, bytes, str]:
    """Make the run's certificate; write DIR/tls.crt and DIR/tls.key (0600; 0640 in a workdir shared
    with its group: ``perms.file_mode_in``)."""
    cert, key, fingerprint = make_cert(hosts)
    for name, data in ((TLS_KEY_FILE, key), (TLS_CERT_FILE, cert)):
        path = workdir / name
        tmp = path.with_suffix(".tmp")
        with os.fdopen(perms.create(tmp), "wb") as f:  # whatever the umask
            f.write(data)
        os.replace(tmp, path)
    return cert, key, fingerprint
