"""Personal data: the contracts' ``pii: true`` fields are held in silver as keyed
pseudonyms, HMAC-SHA256 of the text under a secret key, in hex.

The same subject always gets the same pseudonym, so joins, distinct counts and
deduplication work as on the raw values, and ``lakehouse forget`` finds a subject's rows
from its id; without the key a pseudonym cannot be reversed or recomputed from a guess.
The key comes from the environment variable ``privacy.key_env`` (default
``LAKEHOUSE_PII_KEY``); only a local config may fall back to ``privacy.dev_key``. It never
appears in a plan string, a log line or a commit: the hashing is a vectorised Python UDF
whose key travels inside the pickled function.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError


def pii_key(config: Config, env: Mapping[str, str] | None = None) -> bytes:
    """The pseudonym key: the environment variable, else the config's dev key, else a
    clear error before anything starts."""
    env = os.environ if env is None else env
    privacy = config.privacy
    value = env.get(privacy.key_env) or privacy.dev_key
    if not value:
        raise LakehouseError(
            ErrorCode.PII_KEY_MISSING,
            f"the contracts mark fields pii: true, and {privacy.key_env} (the key of their "
            "pseudonyms) is not set",
            hint=f"export {privacy.key_env}=<a long random secret from your secret store>; "
                 "keep it: a new key gives every subject a new pseudonym",
            variable=privacy.key_env)
    return value.encode("utf-8")


def pseudonym(key: bytes, value: str) -> str:
    """The pseudonym of one value (pure)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _keyed(key: bytes) -> Column:
    @F.pandas_udf(T.StringType())  # type: ignore[call-overload]
    def hmac_sha256(values: pd.Series) -> pd.Series:
        return values.map(lambda v: pseudonym(key, v), na_action="ignore")

    return hmac_sha256  # type: ignore[no-any-return]


def pseudonymise(df: DataFrame, fields: Sequence[str], key: bytes) -> DataFrame:
    """``df`` with each of ``fields`` replaced by its pseudonym (nulls stay null)."""
    if not fields:
        return df
    udf = _keyed(key)
    return df.withColumns({f: udf(F.col(f)) for f in fields})  # type: ignore[operator]
