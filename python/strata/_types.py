"""PEP 249 type objects and constructors."""

from __future__ import annotations

import datetime as _dt
import time as _time

Date = _dt.date
Time = _dt.time
Timestamp = _dt.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> _dt.date:
    """The local date of a POSIX timestamp."""
    return _dt.date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> _dt.time:
    """The local time of day of a POSIX timestamp."""
    return _dt.time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> _dt.datetime:
    """The local date and time of a POSIX timestamp."""
    return _dt.datetime(*_time.localtime(ticks)[:6])


class _TypeObject:
    """Compares equal to every Arrow type name of one PEP 249 group, as
    found in ``Cursor.description[i][1]``."""

    def __init__(self, name: str, *prefixes: str) -> None:
        self._name = name
        self._prefixes = prefixes

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _TypeObject):
            return other is self
        return isinstance(other, str) and other.startswith(self._prefixes)

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"strata.{self._name}"


STRING = _TypeObject("STRING", "string", "large_string", "string_view")
BINARY = _TypeObject("BINARY", "binary", "large_binary", "binary_view", "fixed_size_binary")
NUMBER = _TypeObject(
    "NUMBER", "int", "uint", "float", "double", "halffloat", "decimal", "bool"
)
DATETIME = _TypeObject("DATETIME", "timestamp", "date", "time", "duration", "interval")
ROWID = _TypeObject("ROWID", "\0never")
