"""Strict TOML reading for the cost model's data files (accelerators, energy tables).

Every refusal is a :class:`ConfigError` (a ``ValueError``) whose message names the
file, the section and the key: ``edge.toml: [array] rows: must be an integer ≥ 1, got 0``.
Unknown sections and keys are refused (a typo must not silently fall back to a
default), booleans are never accepted as numbers, and numbers must be finite.
"""
from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any

from intsim.artifact import read_regular, text_error


class ConfigError(ValueError):
    """A refused accelerator or energy-table file; the message names file, section and key."""


#: a configuration file (accelerator, energy table, sweep, precision policy) larger than this is refused unread
TOML_MAX_BYTES = 1 << 20


def read_toml(path: str | os.PathLike, error: type[Exception] = ConfigError, what: str = "a configuration file") -> dict:
    path = Path(path)
    data = read_regular(path, TOML_MAX_BYTES, error, what)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML ({e})") from None
    except ValueError as e:  # an integer over Python's 4300-digit limit
        raise error(f"{path}: not valid TOML ({text_error(e)})") from None
    except RecursionError:  # e.g. a = [[[[…]]]] 100000 deep (found by fuzzing)
        raise error(f"{path}: not valid TOML (nested too deeply to parse)") from None


class Section:
    """One ``[section]`` of a document, read strictly; call :meth:`done` last."""

    def __init__(self, doc: dict, name: str, where: str, required: bool = True):
        self.where, self.name = where, name
        raw = doc.get(name)
        if raw is None:
            if required:
                raise ConfigError(f"{where}: missing section [{name}]")
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: [{name}] must be a table (section), got {type(raw).__name__}")
        self.raw = raw
        self.seen: set[str] = set()

    def _err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.where}: [{self.name}] {key}: {msg}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def _get(self, key: str, required: bool, default: Any):
        self.seen.add(key)
        if key not in self.raw:
            if required:
                raise ConfigError(f"{self.where}: [{self.name}] missing required key {key!r}")
            return default, False
        return self.raw[key], True

    def string(self, key: str, *, required: bool = True, default: str | None = None,
               choices: tuple[str, ...] | None = None) -> str | None:
        v, present = self._get(key, required, default)
        if not present:
            return v
        if not isinstance(v, str):
            raise self._err(key, f"must be a string, got {type(v).__name__} {v!r}")
        if choices is not None and v not in choices:
            raise self._err(key, f"must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
        return v

    def strings(self, key: str, *, required: bool = True, default: list[str] | None = None,
                choices: tuple[str, ...] | None = None) -> list[str] | None:
        """A non-empty list of strings without repeats (each one of ``choices`` when given)."""
        v, present = self._get(key, required, default)
        if not present:
            return v
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise self._err(key, f"must be a non-empty list of strings, got {v!r}")
        if len(set(v)) != len(v):
            raise self._err(key, f"lists {sorted(x for x in set(v) if v.count(x) > 1)[0]!r} twice")
        bad = [x for x in v if choices is not None and x not in choices]
        if bad:
            raise self._err(key, f"{bad[0]!r} is not one of {', '.join(repr(c) for c in choices)}")
        return list(v)

    def boolean(self, key: str, *, required: bool = True, default: bool | None = None) -> bool | None:
        v, present = self._get(key, required, default)
        if present and not isinstance(v, bool):
            raise self._err(key, f"must be true or false, got {type(v).__name__} {v!r}")
        return v

    def integer(self, key: str, *, required: bool = True, default: int | None = None,
                lo: int | None = None, hi: int | None = None) -> int | None:
        v, present = self._get(key, required, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._err(key, f"must be an integer, got {type(v).__name__} {v!r}")
        if lo is not None and v < lo:
            raise self._err(key, f"must be ≥ {lo}, got {v}")
        if hi is not None and v > hi:
            raise self._err(key, f"must be ≤ {hi}, got {v}")
        return v

    def number(self, key: str, *, required: bool = True, default: float | None = None,
               positive: bool = False, nonnegative: bool = False, hi: float | None = None) -> float | None:
        v, present = self._get(key, required, default)
        if not present:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._err(key, f"must be a number, got {type(v).__name__} {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise self._err(key, f"must be finite, got {v}")
        if positive and not v > 0:
            raise self._err(key, f"must be > 0, got {v:g}")
        if nonnegative and v < 0:
            raise self._err(key, f"must be ≥ 0, got {v:g}")
        if hi is not None and v > hi:
            raise self._err(key, f"must be ≤ {hi:g}, got {v:g}")
        return v

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            raise ConfigError(
                f"{self.where}: [{self.name}] unknown key {unknown[0]!r} "
                f"(known: {', '.join(sorted(self.seen))})"
            )


def check_sections(doc: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown section or top-level key {unknown[0]!r} "
                          f"(known sections: {', '.join(allowed)})")
