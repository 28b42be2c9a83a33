"""What values a config key allows: one rule per key, declared next to the key's dataclass as
``RULES: ClassVar[dict] = {"field": rule, ...}`` (plain data, no imports of role packages or torch).

core.config checks every key of a run against its rule before any process starts; each failure is one
line naming the key, the value and what is allowed. tests/platform/test_config_rules.py checks that every
numeric key of every section has a rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

BIG = 2**53  # the default upper bound of an integer key: anything above is a typo, and float64 loses exactness


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) >= 1e6:
        return f"{x:.0e}"
    return f"{x:g}" if isinstance(x, float) else f"{x:,}"


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (open at an end when lo_open / hi_open); `integer` says it must be whole."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    optional: bool = False  # None allowed

    def describe(self) -> str:
        what = "an integer" if self.integer else "a finite number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {_num(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {_num(self.hi)}")
        return what + (" " + " and ".join(parts) if parts else "") + (" (or null)" if self.optional else "")

    def problem(self, value) -> str | None:
        """None when `value` is allowed, else what is allowed."""
        if value is None:
            return None if self.optional else self.describe()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.describe()
        if isinstance(value, float) and not math.isfinite(value):
            return self.describe()
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            return self.describe()
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return self.describe()
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return self.describe()
        return None


@dataclass(frozen=True)
class OneOf:
    choices: tuple

    def describe(self) -> str:
        names = [str(c) for c in self.choices]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    def problem(self, value) -> str | None:
        return None if value in self.choices else self.describe()


@dataclass(frozen=True)
class SubsetOf:
    """A non-empty list of distinct values, each one of `choices` (e.g. the splits to evaluate on)."""

    choices: tuple

    def describe(self) -> str:
        return f"a non-empty list of distinct values of {', '.join(str(c) for c in self.choices)}"

    def problem(self, value) -> str | None:
        if (not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value)
                or any(v not in self.choices for v in value)):
            return self.describe()
        return None


@dataclass(frozen=True)
class IntList:
    """A list of integers, each in [lo, hi] (layer widths)."""

    lo: int = 1
    hi: int = 2**20
    min_len: int = 0

    def describe(self) -> str:
        return f"a list of at least {self.min_len} integers in [{self.lo}, {_num(self.hi)}]"

    def problem(self, value) -> str | None:
        if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
            return self.describe()
        item = Range(self.lo, self.hi, integer=True)
        return self.describe() if any(item.problem(v) for v in value) else None


def count(lo: int = 0, hi: int = BIG) -> Range:
    """An integer in [lo, hi]."""
    return Range(lo, hi, integer=True)


def at_least(lo: float, hi: float | None = None) -> Range:
    return Range(lo, hi)


def positive(hi: float | None = None) -> Range:
    return Range(0, hi, lo_open=True)


def fraction(lo_open: bool = False, hi_open: bool = False) -> Range:
    """A number in [0, 1] (ends open as asked)."""
    return Range(0, 1, lo_open=lo_open, hi_open=hi_open)


SECONDS = Range(0, 10**7)  # a duration: >= 0 and at most about four months
POSITIVE_SECONDS = Range(0, 10**7, lo_open=True)
LEARNING_RATE = Range(0, 1, lo_open=True)
ANY_FINITE = Range()
