"""Client credentials → the key used upstream (DESIGN.md §7)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from werkzeug.datastructures import Headers

from config import Settings
from errors import Unauthorized


def client_key(headers: Headers | Mapping[str, str]) -> str | None:
    """The key a client presented as `Authorization: Bearer …` or `x-api-key`."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


def upstream_key(headers: Headers | Mapping[str, str], settings: Settings) -> str:
    """The key for z.ai: SERVER_API_KEY for an accepted proxy key, else the client's own key."""
    presented = client_key(headers)
    if presented is None:
        raise Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key")
    if not settings.proxy_api_keys:
        return presented
    if not is_proxy_key(presented, settings.proxy_api_keys):
        raise Unauthorized("invalid API key")
    assert settings.server_api_key is not None  # Settings.validate guarantees it
    return settings.server_api_key


def is_proxy_key(presented: str, accepted: tuple[str, ...]) -> bool:
    """Constant-time membership test, comparing against every key so timing reveals nothing."""
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(presented.encode(), key.encode())
    return matched


def check_listing_access(headers: Headers | Mapping[str, str], settings: Settings) -> None:
    """Listing models needs a proxy key only when the proxy has its own keys."""
    if settings.proxy_api_keys:
        upstream_key(headers, settings)
