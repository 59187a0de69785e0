"""The building blocks of the config sections: the error types, :func:`option` (a field
with its help), :class:`Section` (each value checked against its annotation by
:func:`check_value`, then the section's own rules), and the translation of jsonargparse's
messages into errors that start with the dotted key.

The command line and YAML are parsed once, by :func:`reference_impl.config.run.build_parser`;
a section built from those values, or directly in Python, is checked field by field
against the annotation, never parsed again.

Nothing here knows which sections exist; :mod:`.sections` declares them and :mod:`.run`
composes them into the run's :class:`~reference_impl.config.run.Config`.
"""

import argparse
import dataclasses
import difflib
import functools
import math
import numbers
import re
import textwrap
import typing
from typing import Any, Callable, ClassVar, Literal, Mapping

from jsonargparse import DefaultHelpFormatter


class ConfigError(ValueError):
    """An invalid configuration value; the message starts with the dotted key."""


class ConfigTypeError(ConfigError, TypeError):
    """A configuration value of the wrong type; the message starts with the dotted key."""


def option(default: Any, help: str, *, paper: Any = dataclasses.MISSING,
           factory: bool = False) -> Any:
    """A dataclass field with a one-line description and, where it differs, the paper's value."""
    meta = {"help": help}
    if paper is not dataclasses.MISSING:
        meta["paper"] = paper
    if factory:
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One configurable key: its annotation, one-line help, default and paper value."""

    type: Any
    help: str
    default: Any
    paper: Any = dataclasses.MISSING


@functools.cache
def nested_groups(cls: type) -> dict[str, type]:
    """The fields of section ``cls`` that hold a nested config class (``algo.pgpo``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])}


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's (each option's type and default), keeping hyphenated values
    (``seq-mean-token-mean``) whole when wrapping."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_leaf(group: Any, key: str, leaf: Leaf) -> None:
    """``--key`` in argument ``group`` (of a jsonargparse parser), typed by ``leaf``."""
    paper = "" if leaf.paper is dataclasses.MISSING else \
        f" [paper: {'null' if leaf.paper is None else leaf.paper}]"
    flag = {"nargs": "?", "const": True} if leaf.type is bool else {}
    group.add_argument(f"--{key}", type=leaf.type, default=leaf.default,
                       help=leaf.help + paper, **flag)


def parse_given(parse: Callable[[], Any], *, origin: str, leaves: Mapping[str, Leaf],
                unknown: Callable[[str, str], ConfigError] | None = None) -> dict[str, Any]:
    """The values a jsonargparse parse (given values only) returns, as a nested dict;
    its errors become :class:`ConfigError` naming the dotted key (``unknown(key,
    origin)`` words the error of a key the parser does not know)."""
    try:
        given = parse().as_dict()
    except argparse.ArgumentError as err:
        raise config_error(str(err), origin, leaves, unknown) from None

    def finite(values: Mapping[str, Any], prefix: str) -> None:
        for k, v in values.items():
            if isinstance(v, dict):
                finite(v, f"{prefix}{k}.")
            elif isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{prefix}{k}: must be finite, got {v}")
    finite(given, "")
    return given


def config_error(text: str, origin: str, leaves: Mapping[str, Leaf],
                 unknown: Callable[[str, str], ConfigError] | None = None) -> ConfigError:
    """jsonargparse's message as a :class:`ConfigError` that starts with the dotted key."""
    missing = re.match(r"Option '([^']+)' is not accepted", text)
    if missing and unknown is not None:
        return unknown(missing.group(1), origin)
    bad = re.match(r'Parser key "([^"]+)"', text)
    if bad is None or bad.group(1) not in leaves:
        return ConfigError(f"{origin}: {text}")
    key, tp = bad.group(1), leaves[bad.group(1)].type
    got = re.findall(r"(?:Got|Given) value: (.*)", text)
    value = got[-1] if got else "?"
    if typing.get_origin(tp) is Literal:
        return _choice_error(key, typing.get_args(tp), value)
    size = re.search(r"Expected a tuple with (\d+) elements", text)
    if size:
        return ConfigTypeError(f"{key}: expected {size.group(1)} comma-separated values, "
                               f"got {value!r}")
    return _type_error(key, tp, value)


def _choice_error(key: str, choices: tuple, value: Any) -> ConfigError:
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{key}: must be one of {', '.join(map(repr, names))}; "
                       f"got {str(value)!r}{hint}")


def _type_error(key: str, tp: Any, value: Any) -> ConfigTypeError:
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) is typing.Union and type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [tp]
    names = [{bool: "a bool", int: "an int", float: "a float", str: "a str"}.get(
        a, "a list" if typing.get_origin(a) is tuple else str(a)) for a in inner]
    expected = " or ".join(names + (["null"] if optional else []))
    return ConfigTypeError(f"{key}: expected {expected}, got {str(value)!r}")


def check_value(key: str, tp: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``tp`` of config key ``key``, normalised as
    the parser would give it: an int where a float is declared becomes a float, a list a
    tuple. Strings are not converted (``"3"`` is not an int here; the command line's text
    is converted once, by the parser). The annotations the sections use: ``bool``,
    ``int``, ``float``, ``str``, ``Literal[...]``, ``Optional[...]`` of those,
    ``tuple[T, ...]`` and ``tuple[T, T]``."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{key}: unsupported annotation {tp}")
        try:
            return check_value(key, inner[0], value)
        except ConfigTypeError:
            raise _type_error(key, tp, value) from None
    if origin is Literal:
        if isinstance(value, bool) or value not in args:
            raise _choice_error(key, args, value)
        return str(value) if isinstance(value, str) else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, tp, value)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            raise ConfigTypeError(f"{key}: expected {len(items)} comma-separated values, "
                                  f"got {str(list(value))!r}")
        return tuple(check_value(key, t, v) for t, v in zip(items, value))
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(key, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _type_error(key, tp, value)
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _type_error(key, tp, value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be finite, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(key, tp, value)
        return str(value)  # a str subclass (numpy.str_) as a plain str, as YAML writes it
    raise TypeError(f"{key}: unsupported annotation {tp}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Section:
    """Base of every config section: each value checked against its annotation and
    normalised (1 -> 1.0 for a float, a list -> tuple) by :func:`check_value`, then the
    section's own ``_validate``."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        groups = nested_groups(type(self))
        for name, cls in groups.items():  # a nested config validates itself
            if not isinstance(getattr(self, name), cls):
                raise ConfigTypeError(f"{self._section}.{name}: expected a {cls.__name__}, "
                                      f"got {type(getattr(self, name)).__name__}")
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.name not in groups:
                object.__setattr__(self, f.name, check_value(
                    f"{self._section}.{f.name}", hints[f.name], getattr(self, f.name)))
        self._validate()

    def _validate(self) -> None:
        pass

    def _fail(self, name: str, message: str) -> None:
        raise ConfigError(f"{self._section}.{name}: {message}")

    def _range(self, name: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> None:
        value = getattr(self, name)
        if value is None:
            return
        bad = ((low is not None and (value < low or (low_open and value == low)))
               or (high is not None and (value > high or (high_open and value == high))))
        if bad:
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
            self._fail(name, f"must lie in {interval}, got {value}")


__all__ = ["ConfigError", "ConfigTypeError", "HelpFormatter", "Leaf", "Section", "add_leaf",
           "check_value", "config_error", "nested_groups", "option", "parse_given"]
