"""argparse ``type=`` checks: a bad value is a one-line usage error before anything is imported or run."""
from __future__ import annotations

import argparse


def bit_list(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated bit widths like 3,4,6,8, got {text!r}") from None
    if not bits or any(not 2 <= b <= 8 for b in bits):
        raise argparse.ArgumentTypeError(f"candidate widths must be in 2..8, got {text!r}")
    return bits


def positive_int(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def unit_fraction(text: str) -> float:
    """A number in [0, 1] (``--stress``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return v


def bits_spec(text: str) -> str:
    """``--bits``: ``W<b>A<b>`` with both widths in 2..16 (checked here, before torch is imported)."""
    import re

    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected W<bits>A<bits> such as W4A4 or W8A8, got {text!r}")
    for what, b in (("weight", int(m.group(1))), ("activation", int(m.group(2)))):
        if not 2 <= b <= 16:
            raise argparse.ArgumentTypeError(f"{what} bits must be in [2, 16], got {b} in {text!r}")
    return text.strip()


def positive_mb(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of MB, got {text}")
    return v


def positive_float(text: str) -> float:
    """A finite positive number (``--rgb-range``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return v
