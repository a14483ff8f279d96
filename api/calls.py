"""One request's upstream calls: the one smaller retry after an overflow answer, errors mapped.

An upstream that says the prompt is too long gets exactly one retry, sized by the
ContextManager, before any byte went to the client; one that still refuses, or a request with
nothing left to cut, becomes "prompt is too long", the phrase clients act on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from api.services import Services
from config import Settings, UsageReporting
from context.manager import Prepared, PromptTooLongError
from context.overflow import is_overflow
from context.scaling import UsageReport
from errors import ProxyError, UpstreamError, UpstreamUnavailable
from upstream import canonical as c
from upstream.client import UpstreamStream
from upstream.gate import Slot

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class UpstreamCall:
    """The upstream calls of one request, with the one smaller retry after an overflow answer."""

    services: Services
    key: str
    headers: dict[str, str]

    @property
    def summary_key(self) -> str:
        """Summary calls use SERVER_API_KEY when it is set, else the client's key (DESIGN §7)."""
        return self.services.settings.server_api_key or self.key

    def complete(self, prepared: Prepared) -> c.Response:
        response = self.services.upstream.complete(
            prepared.route, prepared.request, self.key, self.headers
        )
        if true := input_tokens(response["usage"]):
            self.services.context.learn(prepared, true)
        return response

    def open_stream(self, prepared: Prepared, slot: Slot | None = None) -> UpstreamStream:
        """Open the upstream stream in `slot` (a gate slot already won) or in one waited for."""
        return self.services.upstream.open_stream(
            prepared.route,
            prepared.request,
            self.key,
            prepared.info.estimated_input_tokens,
            self.headers,
            slot,
        )

    def with_retry(self, prepared: Prepared, send: Callable[[Prepared], T]) -> tuple[Prepared, T]:
        """Send; after an overflow answer send once more, smaller; never a blind repeat."""
        context = self.services.context
        with _upstream_key_errors(self.services.settings):
            try:
                return prepared, send(prepared)
            except UpstreamError as error:
                retry = context.after_overflow(prepared, error.status, error.code, error.message)
                if retry is None:
                    raise _overflow_as_too_long(prepared, error) from None
            logger.info(
                "CONTEXT overflow answer: retrying once with %d tokens (was %d)",
                retry.info.estimated_input_tokens,
                prepared.info.estimated_input_tokens,
            )
            try:
                return retry, send(retry)
            except UpstreamError as error:
                raise _overflow_as_too_long(retry, error) from None


def _overflow_as_too_long(prepared: Prepared, error: UpstreamError) -> ProxyError:
    """An overflow we could not fix says "prompt is too long", the phrase clients act on."""
    if not is_overflow(error.status, error.code, error.message):
        return error
    return PromptTooLongError(
        f"prompt is too long: the upstream refused {prepared.info.estimated_input_tokens} "
        f"estimated tokens for a {prepared.route.window}-token window ({error.message})",
        param="messages",
        code=error.code,
    )


@contextmanager
def _upstream_key_errors(settings: Settings) -> Iterator[None]:
    """With PROXY_API_KEYS the upstream key is the proxy's own: z.ai refusing it is our fault."""
    try:
        yield
    except UpstreamError as error:
        if error.status in (401, 403) and settings.proxy_api_keys:
            logger.error("z.ai refused SERVER_API_KEY (status %s)", error.status)
            raise UpstreamUnavailable("the proxy's upstream credentials were refused") from None
        raise


def usage_report(settings: Settings, prepared: Prepared) -> UsageReport:
    """How upstream usage is checked, described (USAGE_REPORTING) and scaled for the client."""
    info = prepared.info
    added = info.tokens_saved if settings.usage_reporting is UsageReporting.CONVERSATION else 0
    return UsageReport(info.estimated_input_tokens, info.context_limit, info.scale_factor, added)


def input_tokens(usage: dict[str, Any] | c.Usage) -> int:
    """The whole input an upstream usage describes: fresh, cache-read and cache-written tokens."""
    keys = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    return sum(v for k in keys if isinstance(v := usage.get(k), int) and not isinstance(v, bool))
