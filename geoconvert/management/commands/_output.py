"""Shared by the management commands: exit codes, durations and plain-text tables."""

import re
from datetime import timedelta

from django.core.management.base import CommandError

# Exit codes: 0 all went well, 1 the command ran and something failed, 2 bad arguments.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `7d`, `2w` (a bare number is seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise CommandError(
            f"Not a duration: {text!r} (use e.g. 30m, 24h, 7d).", returncode=EXIT_USAGE
        )
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


def age(delta: timedelta | None) -> str:
    """A short human age: 45s, 12m, 3h, 2d."""
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def table(headers: list[str], rows: list[list]) -> str:
    """A left-aligned plain-text table; cells are str()-ed and newlines flattened."""
    cells = [[" ".join(str(c if c is not None else "-").split()) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def shorten(text: str, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"
