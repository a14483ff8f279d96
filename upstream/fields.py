"""Typed reads from client JSON: each raises BadRequest naming the exact field that is wrong."""

from __future__ import annotations

import math
from typing import Any

from errors import BadRequest

_MISSING = object()


def require_object(value: Any, path: str) -> dict[str, Any]:
    """The value as a JSON object, or 400 naming `path`."""
    if not isinstance(value, dict):
        raise BadRequest(f"{path} must be an object", param=path)
    return value


def require_list(value: Any, path: str, *, non_empty: bool = False) -> list[Any]:
    """The value as a JSON array (optionally non-empty), or 400 naming `path`."""
    if not isinstance(value, list):
        raise BadRequest(f"{path} must be an array", param=path)
    if non_empty and not value:
        raise BadRequest(f"{path} must not be empty", param=path)
    return value


def get_str(body: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    """body[key] as a string; None when absent and optional."""
    value = body.get(key, _MISSING)
    if value is _MISSING or (value is None and not required):
        if required:
            raise BadRequest(f"{_join(path, key)} is required", param=_join(path, key))
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{_join(path, key)} must be a string", param=_join(path, key))
    return value


def get_int(body: dict[str, Any], key: str, path: str = "", *, minimum: int = 0) -> int | None:
    """body[key] as an integer ≥ minimum; None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadRequest(
            f"{_join(path, key)} must be an integer ≥ {minimum}", param=_join(path, key)
        )
    return value


def get_number(
    body: dict[str, Any], key: str, path: str = "", *, low: float, high: float
) -> float | None:
    """body[key] as a finite number in [low, high]; None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise BadRequest(
            f"{_join(path, key)} must be a number between {low:g} and {high:g}",
            param=_join(path, key),
        )
    return float(value)


def get_bool(body: dict[str, Any], key: str, path: str = "") -> bool:
    """body[key] as a boolean; False when absent."""
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{_join(path, key)} must be a boolean", param=_join(path, key))
    return value


def get_stop_list(value: Any, path: str) -> list[str] | None:
    """A stop value (string or array of strings) as a list; None when absent."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise BadRequest(f"{path} must be a string or an array of strings", param=path)
    return [s for s in items if s]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
