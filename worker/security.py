"""Broker security from the environment: SASL_SSL with SCRAM-SHA-512 and TLS.

| variable | meaning |
|---|---|
| KAFKA_SECURITY_PROTOCOL | PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL |
| KAFKA_SASL_MECHANISM | SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN |
| KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD | SASL credentials (or *_FILE variants pointing at files) |
| KAFKA_SSL_CAFILE | CA bundle that signed the brokers' certificates |
| KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE | client certificate and key (mutual TLS) |

Secrets are never printed: ``describe()`` is what logs may show.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _secret(name: str) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Security:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __repr__(self) -> str:                      # never show the password
        return f"Security({self.describe()})"

    def describe(self) -> dict:
        return {"protocol": self.protocol, "mechanism": self.mechanism if "SASL" in self.protocol else None,
                "username": self.username, "password": "***" if self.password else None,
                "cafile": self.cafile, "certfile": self.certfile}

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

    def aiokafka_kwargs(self) -> dict:
        """Keyword arguments for aiokafka clients (producer, consumer, admin)."""
        kw: dict = {"security_protocol": self.protocol}
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kw.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                      sasl_plain_password=self.password)
        return kw

    def faust_credentials(self):
        """``broker_credentials`` for the faust app, or None for PLAINTEXT."""
        import faust
        if self.uses_sasl:
            return faust.SASLCredentials(username=self.username, password=self.password,
                                         mechanism=self.mechanism, ssl_context=self.ssl_context())
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None


def from_env() -> Security:
    protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SystemExit(f"configuration error: KAFKA_SECURITY_PROTOCOL must be one of {PROTOCOLS}")
    mechanism = os.environ.get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper()
    if mechanism not in MECHANISMS:
        raise SystemExit(f"configuration error: KAFKA_SASL_MECHANISM must be one of {MECHANISMS}")
    sec = Security(protocol=protocol, mechanism=mechanism,
                   username=os.environ.get("KAFKA_SASL_USERNAME") or None,
                   password=_secret("KAFKA_SASL_PASSWORD"),
                   cafile=os.environ.get("KAFKA_SSL_CAFILE") or None,
                   certfile=os.environ.get("KAFKA_SSL_CERTFILE") or None,
                   keyfile=os.environ.get("KAFKA_SSL_KEYFILE") or None)
    if sec.uses_sasl and not (sec.username and sec.password):
        raise SystemExit("configuration error: SASL needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    return sec
