"""The environment variables the course sets in this process, each recorded with why: `course.setup()` and
`engine.prepare_environment()` change `os.environ` only through `put()`, `default()` and `remove()`."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvSetting:
    """One variable the course set (or found set and left alone), with the value in effect and why."""

    name: str
    value: str | None  # None: the course removed it
    why: str
    shown: str | None = None  # what to print instead of a long machine-specific value

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.name} (unset)  # {self.why}"
        return f"{self.name}={self.shown or self.value}  # {self.why}"


_RECORDED: dict[str, EnvSetting] = {}


def put(name: str, value: str, why: str, *, shown: str | None = None) -> None:
    """Set `name` to `value` and record why."""
    os.environ[name] = value
    _RECORDED[name] = EnvSetting(name, value, why, shown=shown)


def default(name: str, value: str, why: str) -> None:
    """Set `name` unless it is already set (yours wins); record the value in effect either way."""
    os.environ.setdefault(name, value)
    _RECORDED[name] = EnvSetting(name, os.environ[name], why)


def remove(name: str, why: str) -> None:
    """Unset `name` if it is set, and record why."""
    if os.environ.pop(name, None) is not None:
        _RECORDED[name] = EnvSetting(name, None, why)


def recorded() -> list[EnvSetting]:
    """What the course set in this process, by name."""
    return [_RECORDED[name] for name in sorted(_RECORDED)]
