"""One error hierarchy with stable codes.

Every failure a user can cause or fix (bad config, missing broker, unknown topic, data
loss in Kafka, ...) raises `LakehouseError` with a stable `ErrorCode`, parameters, and a
hint that says what to do. Tests assert on the code, never on the wording.
"""

from __future__ import annotations

from enum import StrEnum
from functools import partial
from typing import Any


class ErrorCode(StrEnum):
    """Stable identifiers of user-facing errors."""

    CONFIG_NOT_FOUND = "LH-CONF-001"
    CONFIG_INVALID_YAML = "LH-CONF-002"
    CONFIG_UNKNOWN_KEY = "LH-CONF-003"
    CONFIG_MISSING_KEY = "LH-CONF-004"
    CONFIG_BAD_VALUE = "LH-CONF-005"
    WAREHOUSE_NOT_WRITABLE = "LH-CONF-006"
    SECRET_NOT_SET = "LH-CONF-007"
    PII_KEY_MISSING = "LH-CONF-008"
    BROKER_UNREACHABLE = "LH-KAFKA-001"
    TOPIC_NOT_FOUND = "LH-KAFKA-002"
    KAFKA_DATA_LOSS = "LH-KAFKA-003"
    BROKER_LOST = "LH-KAFKA-004"
    KAFKA_BAD_OPTION = "LH-KAFKA-005"
    KAFKA_PRODUCE_FAILED = "LH-KAFKA-006"
    KAFKA_NOT_AUTHENTICATED = "LH-KAFKA-007"
    KAFKA_NOT_AUTHORIZED = "LH-KAFKA-008"
    BROKER_START_FAILED = "LH-BROKER-001"
    BROKER_NOT_EMBEDDED = "LH-BROKER-002"
    BROKER_PORT_TAKEN = "LH-BROKER-003"
    BROKER_RUNNING_ELSEWHERE = "LH-BROKER-004"
    BROKER_RECONFIGURED = "LH-BROKER-005"
    JARS_MISSING = "LH-JVM-001"
    DRIVER_JVM_EXITED = "LH-JVM-002"
    UNKNOWN_SOURCE = "LH-DEF-001"
    BAD_DEFINITION = "LH-DEF-002"
    UNKNOWN_TABLE = "LH-DEF-003"
    TABLE_NOT_RUN = "LH-DEF-004"
    DELTA_WRITE_FAILED = "LH-DELTA-001"
    DELTA_VERSION_GONE = "LH-DELTA-002"
    DELTA_CHANGE_COMMIT = "LH-DELTA-003"
    DELTA_TABLE_NOT_FOUND = "LH-DELTA-004"
    DELTA_BAD_OPTION = "LH-DELTA-005"
    DELTA_UNSUPPORTED = "LH-DELTA-006"
    CONTRACT_INVALID = "LH-CONTRACT-001"
    CONTRACT_BREAKS_TABLE = "LH-CONTRACT-002"
    CONTRACT_INCOMPATIBLE = "LH-CONTRACT-003"
    SUITE_INVALID = "LH-GX-001"
    EXPECTATION_UNSUPPORTED = "LH-GX-002"
    CRITICAL_RULE_FAILED = "LH-QUALITY-001"
    QUARANTINE_NO_MATCH = "LH-QUARANTINE-001"
    STREAM_FAILED = "LH-STREAM-001"
    TABLE_LOCKED = "LH-STREAM-002"
    CHECKPOINT_DAMAGED = "LH-STREAM-003"
    QUERY_UNKNOWN_TABLE = "LH-QUERY-001"
    QUERY_FAILED = "LH-QUERY-002"
    QUERY_BAD_OPTION = "LH-QUERY-003"
    GOLD_MISMATCH = "LH-GOLD-001"
    LINEAGE_NO_EVENTS = "LH-LINEAGE-001"
    LINEAGE_NO_VERSION = "LH-LINEAGE-002"
    LINEAGE_NOT_A_BATCH = "LH-LINEAGE-003"
    MARQUEZ_NOT_INSTALLED = "LH-LINEAGE-004"
    MARQUEZ_START_FAILED = "LH-LINEAGE-005"
    TIME_BAD_AS_OF = "LH-TIME-001"
    TIME_NO_VERSION = "LH-TIME-002"
    INSIDE_AUDIT_HORIZON = "LH-TIME-004"
    TIME_VACUUMED = "LH-TIME-005"
    AUDIT_NO_RULES = "LH-AUDIT-001"
    AUDIT_RULES_NOT_KEPT = "LH-AUDIT-002"
    AUDIT_BUNDLE_ALTERED = "LH-AUDIT-003"
    AUDIT_CHAIN_BROKEN = "LH-AUDIT-004"
    REPLAY_NOTHING = "LH-REPLAY-001"
    REPLAY_NOT_RETAINED = "LH-REPLAY-002"
    REPLAY_TARGET_EXISTS = "LH-REPLAY-003"
    FORGET_NOT_CAUGHT_UP = "LH-FORGET-001"
    BAD_ARGUMENTS = "LH-CLI-001"
    NOT_CONFIRMED = "LH-CLI-002"
    BENCH_FAILED = "LH-BENCH-001"
    CLUSTER_START_FAILED = "LH-CLUSTER-001"
    CLUSTER_NOT_RUNNING = "LH-CLUSTER-002"
    CLUSTER_SUBMIT_FAILED = "LH-CLUSTER-003"
    REGISTRY_START_FAILED = "LH-REGISTRY-001"
    REGISTRY_UNREACHABLE = "LH-REGISTRY-002"
    SCHEMA_INCOMPATIBLE = "LH-REGISTRY-003"
    REGISTRY_NOT_EMBEDDED = "LH-REGISTRY-004"
    REGISTRY_NOT_AUTHENTICATED = "LH-REGISTRY-005"
    TLS_UNTRUSTED = "LH-TLS-001"
    TLS_EXPIRED = "LH-TLS-002"
    TLS_HOST_MISMATCH = "LH-TLS-003"
    TLS_CLIENT_REJECTED = "LH-TLS-004"
    TLS_FAILED = "LH-TLS-005"
    STORAGE_START_FAILED = "LH-STORAGE-001"
    STORAGE_NOT_EMBEDDED = "LH-STORAGE-002"
    STORAGE_UNREACHABLE = "LH-STORAGE-003"
    STORAGE_NO_BUCKET = "LH-STORAGE-004"
    STORAGE_DENIED = "LH-STORAGE-005"
    METRICS_PORT_TAKEN = "LH-OBSERVE-001"
    NO_EVENTS = "LH-OBSERVE-002"


class LakehouseError(Exception):
    """A failure with a stable code, the facts behind it, and what to do about it."""

    def __init__(self, code: ErrorCode, message: str, *, hint: str = "", **params: Any) -> None:
        self.code = code
        self.message = message
        self.hint = hint
        self.params = params
        text = f"[{code.value}] {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)

    @property
    def exit_code(self) -> int:
        """The process exit code: 75 (EX_TEMPFAIL, "try again later") when Kafka or the
        object store went away, so a scheduler can restart the job; 2 otherwise."""
        return 75 if self.code in (ErrorCode.BROKER_LOST, ErrorCode.STORAGE_UNREACHABLE) else 2

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (Spark Python workers); keep them picklable.
        return (partial(LakehouseError, hint=self.hint, **self.params), (self.code, self.message))
