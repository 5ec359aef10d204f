"""A throwaway PKI for the test control plane.

Every component authenticates with x509 client certificates signed by one CA, exactly as in a
kubeadm cluster, so RBAC and the Node authorizer see the same identities they would in production
(``system:kube-controller-manager``, ``system:node:<name>`` in ``system:nodes``, ...). Keys are
ECDSA P-256: generating a full set takes milliseconds, so every control plane gets a fresh PKI.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=2)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key, plus where they were written (if anywhere)."""

    cert_pem: bytes
    key_pem: bytes
    cert_file: Path | None = None
    key_file: Path | None = None

    def write(self, directory: Path, stem: str) -> CertPair:
        """Write ``<stem>.crt``/``<stem>.key`` (key mode 0600) and return the pair with their paths."""
        cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_file.write_bytes(self.cert_pem)
        key_file.touch(mode=0o600)
        key_file.write_bytes(self.key_pem)
        return CertPair(self.cert_pem, self.key_pem, cert_file, key_file)


class CertificateAuthority:
    """A self-signed CA that issues serving and client certificates for one test cluster."""

    def __init__(self, common_name: str = "nejumi-test-ca") -> None:
        self._key = _key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pair(self) -> CertPair:
        """The CA's own certificate and key."""
        return CertPair(self._cert.public_bytes(serialization.Encoding.PEM), _key_pem(self._key))

    def _issue(
        self,
        subject: x509.Name,
        usages: list[x509.ObjectIdentifier],
        sans: list[x509.GeneralName] | None = None,
    ) -> CertPair:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def serving(self, common_name: str, dns_names: list[str], ips: list[str]) -> CertPair:
        """A TLS server certificate valid for the given names and IP addresses."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        return self._issue(subject, [ExtendedKeyUsageOID.SERVER_AUTH], sans)

    def client(self, user: str, groups: tuple[str, ...] = ()) -> CertPair:
        """A client certificate: Kubernetes reads the user from CN and the groups from O."""
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        return self._issue(x509.Name(attrs), [ExtendedKeyUsageOID.CLIENT_AUTH])


def service_account_keys(directory: Path) -> tuple[Path, Path]:
    """Write the ServiceAccount token signing key pair (``sa.key``, ``sa.pub``); return their paths."""
    key = _key()
    key_file, pub_file = directory / "sa.key", directory / "sa.pub"
    key_file.touch(mode=0o600)
    key_file.write_bytes(_key_pem(key))
    pub_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_file, pub_file
