"""How every Kafka client of Concord authenticates and encrypts: one place that turns Settings into options.

A managed Kafka (Confluent Cloud, Amazon MSK, Aiven) refuses a client that does not speak TLS and SASL,
and one client left on PLAINTEXT is enough to break a worker (its timeline reader, a CLI, the health
probe) while every other part connects. So no module builds a client's security options itself: Faust
gets `faust_credentials` (its `broker_credentials`), every aiokafka producer, consumer, admin and bare
client gets `**kafka_client_options(...)`, and `tests/unit/core/test_kafka_security.py` fails on a client
constructed without them.

`KafkaSecurity` is the part of the settings a client needs, as a Struct: the sandbox, which may import
`core` only and runs in a process of its own, carries it in its configuration to its Salesforce CDC
producer. The TLS context reads the certificate files when a client is built: a key that does not open
(wrong password, encrypted without one) stops the process with the file to fix rather than being
prompted for on a terminal nobody watches.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Final

from msgspec import Struct

from concord.core.settings import MASK, Settings, SettingsError, check_kafka_security

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

E_KAFKA_TLS_LOAD: Final = (
    "cannot load the Kafka TLS files ({files}): {reason}. Check that CONCORD_KAFKA_SSL_CAFILE holds PEM "
    "certificates, that CONCORD_KAFKA_SSL_CERTFILE and CONCORD_KAFKA_SSL_KEYFILE are a certificate and its key, "
    "and that CONCORD_KAFKA_SSL_KEY_PASSWORD opens the key if it is encrypted"
)


class KafkaSecurity(Struct, frozen=True, kw_only=True):
    """The security options of a Kafka client (the `CONCORD_KAFKA_SECURITY_*`, `_SASL_*`, `_SSL_*` settings)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    key_password: str = ""
    check_hostname: bool = True

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:
        # Never the passwords: a configuration printed in a log or a traceback must not carry them.
        password = MASK if self.sasl_password else ""
        return (f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
                f"sasl_username={self.sasl_username!r}, sasl_password={password!r}, ca_file={self.ca_file!r}, "
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r}, check_hostname={self.check_hostname})")


def kafka_security(settings: Settings) -> KafkaSecurity:
    """The Kafka security of `settings`, checked (`SettingsError` names the variable to fix)."""
    check_kafka_security(settings)
    return KafkaSecurity(
        protocol=settings.kafka_security_protocol,
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
        ca_file=settings.kafka_ssl_cafile,
        cert_file=settings.kafka_ssl_certfile,
        key_file=settings.kafka_ssl_keyfile,
        key_password=settings.kafka_ssl_key_password,
        check_hostname=settings.kafka_ssl_check_hostname,
    )


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of a client (None without TLS): the CA file or the system's authorities, the client
    certificate if any, the broker's name checked unless turned off (its certificate is verified always)."""
    if not security.tls:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.ca_file or None)
        if security.cert_file:
            # A password is always passed ("" when none is set): OpenSSL would otherwise prompt on the terminal.
            context.load_cert_chain(security.cert_file, security.key_file or None, password=security.key_password)
    except (ssl.SSLError, OSError) as exc:
        files = ", ".join(f for f in (security.ca_file, security.cert_file, security.key_file) if f) or "none"
        raise SettingsError(E_KAFKA_TLS_LOAD.format(files=files, reason=exc)) from None
    context.check_hostname = security.check_hostname
    return context


def kafka_client_options(source: Settings | KafkaSecurity) -> dict[str, Any]:
    """The keyword arguments every aiokafka client takes for its security: `AIOKafkaProducer(...,
    **kafka_client_options(settings))`; also `AIOKafkaConsumer`, `AIOKafkaAdminClient`, `AIOKafkaClient`."""
    security = kafka_security(source) if isinstance(source, Settings) else source
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.sasl:
        options.update(sasl_mechanism=security.sasl_mechanism, sasl_plain_username=security.sasl_username,
                       sasl_plain_password=security.sasl_password)
    if security.tls:
        options["ssl_context"] = ssl_context(security)
    return options


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's `broker_credentials` for `settings` (None on PLAINTEXT): Faust passes them to each client it makes
    (consumer, producer, topic creation) and `agents/faust_internals/table_store.py` to its table loader."""
    security = kafka_security(settings)
    # Imported here: the sandbox and the CLIs use this module without loading Faust.
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(security)
    if security.sasl:
        return SASLCredentials(username=security.sasl_username, password=security.sasl_password,
                               ssl_context=context, mechanism=security.sasl_mechanism)
    if context is not None:
        return SSLCredentials(context)
    return None
