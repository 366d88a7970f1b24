"""Durations as an operator types them: 90s, 15m, 1h, 2d, 1w (the CLI's flags and the page's filters)."""

from __future__ import annotations

import argparse
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds; argparse's own error for anything else, so it serves as an argument type too."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 1h, 2d or 1w")
    return float(match.group(1)) * _UNITS[match.group(2)]
