"""What pydantic found wrong with a file, said the project's way: the dotted key, and what
it must be.

The config (``lakehouse.config``, ``lakehouse.settings``) and the contracts
(``lakehouse.quality.contract``) are frozen pydantic dataclasses with ``FILE`` settings: a
key the class does not have is an error, and a string may be written as a number. Their
bools, integers and numbers are ``StrictBool``, ``StrictInt``, ``StrictFloat``: ``"yes"``
is no bool, ``"2"`` no integer. Each module turns the first ``Problem`` into its own coded
``LakehouseError``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

FILE = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
UNKNOWN_KEY = "unexpected_keyword_argument"
MISSING_KEY = "missing"
_SAID = {"dataclass_type": "must be a mapping", "dict_type": "must be a mapping",
         "bool_type": "must be true or false", "int_type": "must be an integer",
         "float_type": "must be a number", "string_type": "must be a string",
         "list_type": "must be a list", "tuple_type": "must be a list",
         "sequence_str": "must be a list"}


def bad(message: str, at: str = "", kind: str = "lakehouse", **facts: str) -> PydanticCustomError:
    """An error a validator raises, its ``message`` shown as written. ``at``: the key under
    the value validated it is about (a class's validator naming one of its keys)."""
    return PydanticCustomError(kind, message, {"at": at, **facts})


def must(test: Callable[[Any], object], message: str) -> AfterValidator:
    """A check no type says (``Annotated[str, must(...)]``): a value failing ``test`` is an
    error saying ``message`` and the value."""
    def check(value: Any) -> Any:
        if not test(value):
            raise bad(f"{message}, got {value!r}")
        return value
    return AfterValidator(check)


_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _from_env(values: Mapping[str, str], info: ValidationInfo) -> Mapping[str, str]:
    """Each ``${NAME}`` replaced by environment variable NAME, so no secret needs to live in
    a config file; an unset one fails, naming the key. (Only while a file is read: the
    loader passes the environment.)"""
    env = (info.context or {}).get("env")
    if env is None:
        return values
    for key, value in values.items():
        for name in _SECRET.findall(value):
            if name not in env:
                raise bad(f"takes its value from the environment variable {name}, which is "
                          "not set", at=key, kind="secret_not_set", variable=name)
    return {k: _SECRET.sub(lambda m: env[m.group(1)], v) for k, v in values.items()}


def _plain_names(values: Mapping[str, str]) -> Mapping[str, str]:
    """User names of letters, digits, ``_`` and ``-`` only (they become property keys)."""
    for user in values:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", user):
            raise bad("a user name takes letters, digits, _ and - only", at=user)
    return values


EMPTY = BeforeValidator(lambda v: {} if v is None else v)
"""A mapping written empty (``sources:`` and nothing under it) is an empty one."""
Strings = Annotated[Mapping[str, str], EMPTY]
Secrets = Annotated[Mapping[str, str], EMPTY, AfterValidator(_from_env)]
"""A mapping whose values may be written ``${ENV_VAR}``."""
Users = Annotated[Secrets, AfterValidator(_plain_names)]
"""User name -> password (``${ENV_VAR}``)."""
Size = Annotated[str, must(lambda v: re.fullmatch(r"[1-9][0-9]*[kmg]?", v.strip().lower()),
                           "must be a size such as 64m, 512k or 1g")]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong: where (``loc``, the dotted ``key``), pydantic's error type, what."""

    loc: tuple[str | int, ...]
    kind: str
    message: str
    facts: Mapping[str, Any]

    @property
    def key(self) -> str:
        return ".".join(str(p) for p in self.loc)

    @property
    def text(self) -> str:
        """What is wrong, naming the key."""
        if self.kind == UNKNOWN_KEY:
            return f"unknown key '{self.key}'"
        if self.kind == MISSING_KEY:
            return f"required key '{self.key}' is missing"
        return f"{self.key or 'the top level'}: {self.message}"

    def allowed_keys(self, root: type) -> list[str]:
        """The keys the section holding ``key`` may have (``root``: the file's class)."""
        tp: Any = root
        for part in self.loc[:-1]:
            fields = getattr(tp, "__pydantic_fields__", None)
            if fields is not None:
                tp = fields[part].annotation
            else:  # a mapping's value or a tuple's item
                args = typing.get_args(tp)
                tp = args[1] if typing.get_origin(tp) in (Mapping, dict) else args[0]
        return sorted(f.name for f in dataclasses.fields(tp) if f.name != "source_file")


def problems(error: ValidationError) -> list[Problem]:
    """Every problem, unknown and missing keys first (a typo explains the rest)."""
    out = []
    for e in error.errors(include_url=False):
        facts = e.get("ctx") or {}
        loc = e["loc"] + ((facts["at"],) if facts.get("at") else ())
        text = e["msg"] if "at" in facts else \
            f"{_SAID.get(e['type']) or e['msg'].replace('Input should be', 'must be')}, " \
            f"got {e['input']!r}"
        out.append(Problem(loc, e["type"], text, facts))
    return sorted(out, key=lambda p: p.kind not in (UNKNOWN_KEY, MISSING_KEY))
