"""The schema registry, through the Confluent API (confluent-kafka's client).

Any registry speaking it works: Confluent's, or Apicurio's ``/apis/ccompat/v7`` (the
embedded one, ``lakehouse.registry_server``). The project owns the subjects of its Avro
sources: ``publish`` sets the configured compatibility level on the subject (registering
alone enforces nothing) and registers the contract's schema, which the registry refuses
when the level forbids the change. ``writers`` gives every version of a subject by schema
id, fetched once per id and cached, for silver to decode each record with the schema it
was written with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.tls import Trust, refusal

SUBJECT_NOT_FOUND = 40401
UNAUTHENTICATED = 401
INCOMPATIBLE = 409
INVALID = 422
_NEEDED = object()


class SchemaRegistry:
    """One registry, at ``url``; ``properties`` are the client's (``basic.auth.user.info``,
    ``ssl.*``)."""

    def __init__(self, url: str, properties: Mapping[str, str] | None = None,
                 timeout_seconds: int = 10) -> None:
        self.url = url.rstrip("/")
        try:
            self._client = SchemaRegistryClient({"url": self.url, "timeout": timeout_seconds,
                                                 "max.retries": 2, **(properties or {})})
        except (ValueError, TypeError) as exc:
            raise LakehouseError(
                ErrorCode.CONFIG_BAD_VALUE, f"the schema registry client refused its settings: "
                f"{exc}", hint="check schema_registry.url and schema_registry.client_properties "
                               "(e.g. basic.auth.user.info: user:password)",
                key="schema_registry.client_properties") from exc
        self._properties = dict(properties or {})
        self._by_version: dict[tuple[str, int], tuple[int, str]] = {}

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.url!r})"

    def avro_serializer(self, topic: str, schema: Mapping[str, Any]
                        ) -> Callable[[Mapping[str, Any]], bytes]:
        """Datums of ``topic``'s values in the wire format its producers write:
        confluent-kafka's ``AvroSerializer`` with ``schema``, which must be registered
        already (the serializer only looks its id up)."""
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext
        serializer = AvroSerializer(self._client, json.dumps(schema),
                                    conf={"auto.register.schemas": False})
        context = SerializationContext(topic, MessageField.VALUE)
        return lambda datum: bytes(serializer(datum, context))

    def publish(self, subject: str, schema: Mapping[str, Any], level: str) -> int:
        """Set ``level`` on ``subject`` and register ``schema`` there (registering a schema
        it holds changes nothing); its schema id. LH-REGISTRY-003 if the level forbids it."""
        self._call(f"setting compatibility {level} on {subject}",
                   lambda: self._client.set_compatibility(subject, level))
        try:
            return int(self._client.register_schema(subject, _avro(schema)))
        except SchemaRegistryError as exc:
            if exc.http_status_code == INVALID:
                raise LakehouseError(
                    ErrorCode.CONTRACT_INVALID,
                    f"the registry at {self.url} refused the schema of {subject} as invalid: "
                    f"{exc.error_message}", hint="the schema is derived from the source's "
                    "contract: check its types and defaults", subject=subject) from exc
            if exc.http_status_code == INCOMPATIBLE:
                raise LakehouseError(
                    ErrorCode.SCHEMA_INCOMPATIBLE,
                    f"the registry at {self.url} refused the schema of {subject}: "
                    f"{exc.error_message}",
                    hint=f"`lakehouse contract check --against registry` names the fields; "
                         f"the subject's level is {level}", subject=subject) from exc
            raise self._unreachable(f"registering a schema under {subject}", exc) from exc
        except Exception as exc:  # the HTTP client's own errors: refused, timed out
            raise self._unreachable(f"registering a schema under {subject}", exc) from exc

    def writers(self, subject: str) -> dict[int, str]:
        """Schema id -> schema text of every version of ``subject``, soft-deleted ones
        included (records written with them stay in bronze and must still decode); none if
        the subject has none. Each version is fetched once."""
        versions = self._call(f"listing the versions of {subject}",
                              lambda: self._client.get_versions(subject, deleted=True),
                              absent=[])
        out = {}
        for version in versions:
            key = (subject, version)
            if key not in self._by_version:
                registered = self._call(
                    f"reading version {version} of {subject}",
                    lambda v=version: self._client.get_version(subject, v, deleted=True))
                self._by_version[key] = (int(registered.schema_id),
                                         str(registered.schema.schema_str))
            schema_id, text = self._by_version[key]
            out[schema_id] = text
        return out

    def latest(self, subject: str) -> dict[str, Any] | None:
        """The newest schema of ``subject`` (None if the subject has none)."""
        registered = self._call(f"reading the latest schema of {subject}",
                                lambda: self._client.get_latest_version(subject), absent=None)
        return None if registered is None else dict(json.loads(str(registered.schema.schema_str)))

    def answers(self) -> bool:
        """Whether the registry answers at all."""
        try:
            self._client.get_subjects()
        except Exception:
            return False
        return True

    def _call(self, what: str, action: Any, absent: Any = _NEEDED) -> Any:
        """``action()``; ``absent`` if given and the subject or version does not exist."""
        try:
            return action()
        except SchemaRegistryError as exc:
            missing = exc.error_code == SUBJECT_NOT_FOUND or exc.http_status_code == 404
            if missing and absent is not _NEEDED:
                return absent
            raise self._unreachable(what, exc) from exc
        except Exception as exc:
            raise self._unreachable(what, exc) from exc

    def _unreachable(self, what: str, exc: Exception) -> LakehouseError:
        """The error of a call that failed: refused credentials, a TLS handshake's cause
        (``tls.diagnose``), or no answer."""
        if isinstance(exc, SchemaRegistryError) and exc.http_status_code == UNAUTHENTICATED:
            user = self._properties.get("basic.auth.user.info", "").partition(":")[0]
            return LakehouseError(
                ErrorCode.REGISTRY_NOT_AUTHENTICATED,
                f"the schema registry {self.url} refused "
                f"{f'user {user!r}' if user else 'a client without credentials'} ({what})",
                hint="set basic.auth.user.info: <user>:${PASSWORD_VARIABLE} under "
                     "schema_registry.client_properties, with a user and password the "
                     "registry knows (the embedded one: schema_registry.embedded.users)",
                url=self.url, user=user)
        parts = urlsplit(self.url)
        https = parts.scheme == "https"
        if not isinstance(exc, SchemaRegistryError) and (refused := refusal(
                parts.hostname or "", parts.port or (443 if https else 80),
                Trust.of(self._properties) if https else None, "the schema registry",
                "schema_registry.client_properties",
                "write schema_registry.url with https://")) is not None:
            return refused
        return LakehouseError(
            ErrorCode.REGISTRY_UNREACHABLE,
            f"{what} at the schema registry {self.url} failed: {exc}",
            hint="is it running? `lakehouse registry status` (the embedded one), or check "
                 "schema_registry.url and its credentials", url=self.url)


def _avro(schema: Mapping[str, Any]) -> Schema:
    return Schema(json.dumps(schema, sort_keys=False), schema_type="AVRO")
