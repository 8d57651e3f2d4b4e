"""Build typed dataclasses from untyped mappings (TOML tables, `--set key=value` overrides).

One coercion routine serves the competition config and every model's parameters, so a
wrong key or value gets the same clear error wherever it was written. A field named after
a Python keyword carries a trailing underscore (`from_`) and is written without it
(`--set from=...`); messages show the written name.

Ranges are declared next to the defaults, `epochs: int = param(4, ge=1)`, and checked when
the dataclass is built (`Params.__post_init__`), so an impossible value never reaches a
run. A subclass that only changes a default (`epochs: int = 6`) keeps its base's range.
Tuning ranges sit there too, `C: float = param(10.0, gt=0, tune=Tune(0.1, 100, log=True))`:
`comp tune` searches them (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import keyword
import math
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

from comp.errors import CompError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number: at least `ge`, above `gt`, at most `le`, below `lt`."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        checks = (("at least", self.ge, operator.ge), ("above", self.gt, operator.gt),
                  ("at most", self.le, operator.le), ("below", self.lt, operator.lt))
        for words, bound, holds in checks:
            if bound is not None and not holds(value, bound):
                return f"must be {words} {bound:g}, got {value!r}"
        return None


@dataclasses.dataclass(frozen=True)
class Tune:
    """Where `comp tune` searches a parameter: numbers from `low` to `high` (on a log
    scale with `log`, in steps of `step`), or one of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def problem(self) -> str | None:
        if self.choices is not None:
            return None if len(self.choices) > 0 else "choices must not be empty"
        if self.low is None or self.high is None:
            return "needs low and high, or choices"
        if not self.low < self.high:
            return f"low ({self.low:g}) must be below high ({self.high:g})"
        if self.log and self.low <= 0:
            return f"a log range must start above 0, got low={self.low:g}"
        if self.step is not None and (self.step <= 0 or self.log):
            return "step must be above 0, and a log range takes no step"
        return None


def param(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, tune: Tune | None = None,
          **field_options: Any) -> Any:
    """A dataclass field with its default, the range its value must lie in and, with
    `tune`, where `comp tune` searches it."""
    metadata: dict[str, Any] = {"range": Range(ge, gt, le, lt)}
    if tune is not None:
        metadata["tune"] = tune
    return dataclasses.field(default=default, metadata=metadata, **field_options)


class Params:
    """Base of every parameter dataclass: checks each field against its declared range;
    subclasses add checks between fields in their own `__post_init__` (calling this one)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            bounds = declared_range(type(self), f.name)
            value = getattr(self, f.name)
            if bounds is None or value is None or isinstance(value, bool):
                continue
            problem = bounds.problem(value)
            if problem:
                raise CompError(f"{_written_name(f.name)} {problem}")


def declared_range(cls: type, name: str) -> Range | None:
    """The range declared for field `name` by `cls` or the nearest base that declares one."""
    return _declared(cls, name, "range")


def tuning_space(cls: type) -> dict[str, Tune]:
    """The tuning ranges the fields of `cls` declare (inherited ones too), by written name."""
    space = {}
    for f in dataclasses.fields(cls):
        tune = _declared(cls, f.name, "tune")
        if tune is not None:
            space[_written_name(f.name)] = tune
    return space


def _declared(cls: type, name: str, key: str) -> Any:
    for klass in cls.__mro__:
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None and key in declared.metadata:
            return declared.metadata[key]
    return None

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def build(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Instantiate dataclass `cls` from `values`, coercing each value to its field's type.

    `where` names the source in error messages (e.g. "comp.toml [data]" or "--set").
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values = {field_name(key): value for key, value in values.items()}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(map(_written_name, fields)))
        raise CompError(f"{where}: unknown key {_written_name(unknown[0])!r} (known keys: {known})")
    kwargs = {
        name: coerce(value, hints[name], f"{where} {_written_name(name)}")
        for name, value in values.items()
    }
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise CompError(f"{where}: missing required key {_written_name(missing[0])!r}")
    try:
        return cls(**kwargs)
    except CompError as error:
        raise CompError(f"{where}: {error}") from None


def field_name(key: str) -> str:
    """The dataclass field a written key names (`from` → `from_`)."""
    return f"{key}_" if keyword.iskeyword(key) else key


def _written_name(field_name: str) -> str:
    stem = field_name.removesuffix("_")
    return stem if stem != field_name and keyword.iskeyword(stem) else field_name


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Split `key=value` strings from the command line; values stay strings until `build`."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CompError(f"--set expects key=value, got {pair!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert `value` (a native TOML value or a command-line string) to type `tp`."""
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, name)
        raise CompError(f"{name} must be a table, got {value!r}")
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            if type(None) in get_args(tp):
                return None
        errors = []
        for option in options:
            try:
                return coerce(value, option, name)
            except CompError as error:
                errors.append(str(error))
        raise CompError(errors[0])
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            shown = ", ".join(map(str, choices))
            raise CompError(f"{name} must be one of {shown}, got {value!r}")
        return value
    if origin is dict:
        key_type, value_type = get_args(tp) or (str, Any)
        if not isinstance(value, Mapping):
            raise CompError(f"{name} must be a table, got {value!r}")
        return {coerce(k, key_type, name): coerce(v, value_type, f"{name}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        (item_type, *_) = get_args(tp) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise CompError(f"{name} must be a list, got {value!r}")
        return [coerce(v, item_type, name) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise CompError(f"{name} must be true or false, got {value!r}")
    if tp in (int, float):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        number = None
        if is_number and (tp is float or isinstance(value, int)):
            number = tp(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = tp(value)
        if number is not None and math.isfinite(number):
            return number
        kind = "an integer" if tp is int else "a finite number"
        raise CompError(f"{name} must be {kind}, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise CompError(f"{name} must be a string, got {value!r}")
    if tp is Any:
        return value
    raise TypeError(f"unsupported field type {tp!r} for {name}")
