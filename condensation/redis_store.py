"""The Redis backend of the shared store (CACHE_URL=redis://…): shared by every host.

Short socket timeouts and a single immediate retry (for a pooled connection the server closed),
so an unreachable Redis costs a request at most about a second before the store falls back to
process memory. The URL may carry a password: it is never logged.
"""

from __future__ import annotations

import math
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from condensation.store import RETRY_AFTER, GuardedStore

CONNECT_TIMEOUT = 0.5
OPERATION_TIMEOUT = 1.0
# Ping a pooled connection idle this long before reusing it (finds a restarted server).
HEALTH_CHECK_SECONDS = 30

# Delete the lock only if it still holds our token: after a lease expired, another worker's.
RELEASE_IF_OWNED = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""
# Likewise for a new expiry: a lease is renewed only by the caller that holds it.
RENEW_IF_OWNED = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""


class RedisBackend:
    """Raw JSON text in Redis: SET PX, SET NX PX, and compare-and-delete/expire scripts."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=OPERATION_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=HEALTH_CHECK_SECONDS,
            decode_responses=True,
        )
        self._release = self._client.register_script(RELEASE_IF_OWNED)
        self._renew = self._client.register_script(RENEW_IF_OWNED)

    def get(self, key: str) -> tuple[str | None, float | None]:
        pipe = self._client.pipeline(transaction=False)  # one round trip for both
        pipe.get(key)
        pipe.pttl(key)
        raw, millis = pipe.execute()
        return raw, millis / 1000 if millis > 0 else None

    def set(self, key: str, raw: str, ttl: float) -> None:
        self._client.set(key, raw, px=_millis(ttl))

    def add(self, key: str, raw: str, ttl: float) -> bool:
        return bool(self._client.set(key, raw, px=_millis(ttl), nx=True))

    def delete(self, key: str) -> None:
        self._client.delete(key)

    def delete_if(self, key: str, raw: str) -> None:
        self._release(keys=[key], args=[raw])

    def renew_if(self, key: str, raw: str, ttl: float) -> bool:
        return bool(self._renew(keys=[key], args=[raw, _millis(ttl)]))

    def close(self) -> None:
        self._client.close()


class RedisStore(GuardedStore):
    """The shared store in Redis, behind the front LRU, falling back to process memory."""

    def __init__(self, url: str, *, retry_after: float = RETRY_AFTER) -> None:
        super().__init__("redis", RedisBackend(url), where=redact(url), retry_after=retry_after)
        self._secrets = _secrets(url)


def redact(url: str) -> str:
    """The URL without user, password or query: safe for logs.

    >>> redact("redis://user:s3cret@cache.internal:6380/2")
    'redis://cache.internal:6380/2'
    >>> redact("unix:///run/redis.sock?db=1&password=s3cret")
    'unix:///run/redis.sock'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if host and parts.port else ""
    except ValueError:  # not a number: leave it out rather than echo the netloc
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _secrets(url: str) -> tuple[str, ...]:
    """The password in `url` (userinfo or query), as written and unquoted, to scrub from errors."""
    parts = urlsplit(url)
    found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    return tuple({s for p in found if p for s in (p, unquote(p))})


def _millis(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))
