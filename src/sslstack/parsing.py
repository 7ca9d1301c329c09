"""Parsing of list-valued settings shared by the library and the CLI (``6-12``, ``mean,std``)."""

from __future__ import annotations

from .errors import ConfigError


def parse_csv_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_int_list(value: str | None, flag: str) -> list[int] | None:
    """``"6-12"``, ``"0,4,8"`` or ``"3"`` as a list of ints."""
    if value is None:
        return None
    out: list[int] = []
    try:
        for part in value.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ConfigError(
            f"{flag} {value!r}: use numbers, ranges and commas like 6-12 or 0,4,8"
        ) from None
    return out


__all__ = ["parse_csv_list", "parse_int_list"]
