"""Settings: every environment variable the proxy reads, parsed and validated once (DESIGN §8)."""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """An environment variable holds a value the proxy cannot use."""


class UsageReporting(enum.Enum):
    """What reported usage and count_tokens describe (DESIGN.md §4)."""

    FORWARDED = "forwarded"  # the request actually sent, after condensation or truncation
    CONVERSATION = "conversation"  # the client's whole conversation


class Strategy(enum.Enum):
    """How older messages are condensed (DESIGN.md §6)."""

    CONVERSATION_SUMMARY = "conversation_summary"
    KEY_POINT_EXTRACTION = "key_point_extraction"
    PROGRESSIVE_SUMMARIZATION = "progressive_summarization"
    SMART_TRUNCATION = "smart_truncation"  # no AI call: bulky old blocks become placeholders


class LogFormat(enum.Enum):
    """How log lines are written (logs.py)."""

    TEXT = "text"
    JSON = "json"


class VisionRouting(enum.Enum):
    """Where requests holding images go (issue 12)."""

    AUTO = "auto"  # vision model for a recent image when the request fits it; else descriptions
    VISION = "vision"  # the vision model whenever the latest user turn has an image
    DESCRIBE = "describe"  # always the text model, each image replaced by its description


class EndpointPreference(enum.Enum):
    """Which z.ai upstream format serves text requests."""

    AUTO = "auto"
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


# ---------------------------------------------------------------------------- value parsers
# Each takes the variable name and its raw string, so every error names the variable.


def _parse_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _parse_number(
    kind: Callable[[str], T], minimum: float | None = None
) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ConfigError(f"{name}={raw!r} must be a finite number")
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
        return value

    return parse


def _parse_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} must be an http:// or https:// URL")
    return url


def _parse_str(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name} must not be empty")
    return raw.strip()


def _parse_optional(name: str, raw: str) -> str | None:
    del name
    return raw.strip() or None


def _parse_optional_count(name: str, raw: str) -> int | None:
    """A positive whole number, or None when empty (the feature is off)."""
    return _positive_int(name, raw) if raw.strip() else None


def _parse_list(name: str, raw: str) -> tuple[str, ...]:
    del name
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_model_map(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """MODEL_MAP="claude-haiku-*=glm-4.5-air,claude-opus-*=glm-4.6": ordered glob → model pairs."""
    pairs = []
    for item in _parse_list(name, raw):
        pattern, sep, model = item.partition("=")
        if not sep or not pattern.strip() or not model.strip():
            raise ConfigError(f"{name} entry {item!r} must look like pattern=model")
        pairs.append((pattern.strip(), model.strip()))
    return tuple(pairs)


def _parse_level(name: str, raw: str) -> str:
    level = raw.strip().upper() or "INFO"
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"{name}={raw!r} is not a logging level")
    return level


def _parse_choice(kind: type[E]) -> Callable[[str, str], E]:
    """A parser for one value of the enum `kind`, case-insensitive."""

    def parse(name: str, raw: str) -> E:
        try:
            return kind(raw.strip().lower())
        except ValueError:
            allowed = ", ".join(str(p.value) for p in kind)
            raise ConfigError(f"{name}={raw!r} must be one of: {allowed}") from None

    return parse


_parse_preference = _parse_choice(EndpointPreference)


_int = _parse_number(int, minimum=0)
_positive_int = _parse_number(int, minimum=1)
_seconds = _parse_number(float, minimum=0.001)
_float = _parse_number(float, minimum=0.0)


def env(name: str, default: str, parse: Callable[[str, str], Any], secret: bool = False) -> Any:
    """Declare a Settings field read from variable `name` (parsed by `parse`)."""
    return field(
        default=parse(name, default), metadata={"env": name, "parse": parse, "secret": secret}
    )


# ---------------------------------------------------------------------------- Settings


@dataclass(frozen=True)
class Settings:
    """Every knob of the proxy, read once from the environment."""

    # --- auth: client keys accepted by the proxy, and the key it uses upstream (DESIGN.md §7)
    server_api_key: str | None = env("SERVER_API_KEY", "", _parse_optional, secret=True)
    proxy_api_keys: tuple[str, ...] = env("PROXY_API_KEYS", "", _parse_list, secret=True)

    # --- upstreams and routing (DESIGN.md §3)
    upstream_base: str = env("UPSTREAM_BASE", "https://api.z.ai/api/anthropic", _parse_url)
    openai_upstream_base: str = env(
        "OPENAI_UPSTREAM_BASE", "https://api.z.ai/api/coding/paas/v4", _parse_url
    )
    autotext_model: str = env("AUTOTEXT_MODEL", "glm-4.6", _parse_str)
    autovision_model: str = env("AUTOVISION_MODEL", "glm-4.6v", _parse_str)
    text_endpoint_preference: EndpointPreference = env(
        "TEXT_ENDPOINT_PREFERENCE", "auto", _parse_preference
    )
    model_map: tuple[tuple[str, str], ...] = env("MODEL_MAP", "", _parse_model_map)

    # --- windows and usage scaling (DESIGN.md §4)
    real_text_model_tokens: int = env("REAL_TEXT_MODEL_TOKENS", "200000", _positive_int)
    real_vision_model_tokens: int = env("REAL_VISION_MODEL_TOKENS", "65536", _positive_int)
    anthropic_expected_tokens: int = env("ANTHROPIC_EXPECTED_TOKENS", "200000", _positive_int)
    openai_expected_tokens: int = env("OPENAI_EXPECTED_TOKENS", "200000", _positive_int)

    # --- upstream HTTP client: long read timeout because GLM can think for minutes
    request_timeout: float = env("REQUEST_TIMEOUT", "300", _seconds)
    connect_timeout: float = env("CONNECT_TIMEOUT", "10", _seconds)
    # Pool at least as large as the thread count, or requests discards and reopens connections.
    upstream_pool_size: int = env("UPSTREAM_POOL_SIZE", "128", _positive_int)
    max_request_bytes: int = env("MAX_REQUEST_BYTES", str(32 * 1024 * 1024), _positive_int)
    # Limits of one request (each breach is a 4xx naming the variable).
    max_messages: int = env("MAX_MESSAGES", "20000", _positive_int)
    max_content_blocks: int = env("MAX_CONTENT_BLOCKS", "2000", _positive_int)
    max_json_depth: int = env("MAX_JSON_DEPTH", "64", _positive_int)
    max_image_bytes: int = env("MAX_IMAGE_BYTES", str(20 * 1024 * 1024), _positive_int)
    # Upstream answers meaning "later" (429, 503, 529) and failed connections, before any byte
    # reached the client, are tried again this many times, after BACKOFF seconds (doubled each
    # time) or the Retry-After they name, if it is at most MAX_WAIT.
    upstream_max_retries: int = env("UPSTREAM_MAX_RETRIES", "2", _int)
    upstream_retry_backoff: float = env("UPSTREAM_RETRY_BACKOFF", "0.5", _float)
    upstream_retry_max_wait: float = env("UPSTREAM_RETRY_MAX_WAIT", "10", _float)
    # Upstream calls in flight per upstream key, across workers (and hosts with CACHE_URL); more
    # wait in a queue, up to QUEUE_TIMEOUT seconds, then get 429. Empty = no limit.
    upstream_max_concurrency: int | None = env(
        "UPSTREAM_MAX_CONCURRENCY", "", _parse_optional_count
    )
    upstream_queue_timeout: float = env("UPSTREAM_QUEUE_TIMEOUT", "60", _seconds)
    # Chat-completions clients may omit max_tokens; z.ai's Anthropic format requires one.
    default_max_tokens: int = env("DEFAULT_MAX_TOKENS", "8192", _positive_int)

    # --- token counting (DESIGN.md §5)
    enable_accurate_token_counting: bool = env(
        "ENABLE_ACCURATE_TOKEN_COUNTING", "true", _parse_bool
    )
    legacy_token_estimation: bool = env("LEGACY_TOKEN_ESTIMATION", "false", _parse_bool)
    tokenizer_encoding: str = env("TOKENIZER_ENCODING", "cl100k_base", _parse_str)
    tokenizer_file: str | None = env("TOKENIZER_FILE", "", _parse_optional)
    tiktoken_cache_size: int = env("TIKTOKEN_CACHE_SIZE", "1000", _positive_int)
    enable_token_counting_logging: bool = env("ENABLE_TOKEN_COUNTING_LOGGING", "false", _parse_bool)
    enable_dynamic_image_tokens: bool = env("ENABLE_DYNAMIC_IMAGE_TOKENS", "true", _parse_bool)
    base_image_tokens: int = env("BASE_IMAGE_TOKENS", "85", _int)
    image_tokens_per_char: float = env("IMAGE_TOKENS_PER_CHAR", "0.25", _float)
    fixed_image_tokens: int = env("FIXED_IMAGE_TOKENS", "1000", _int)

    # --- images in long sessions: described once by the vision model, for the text model
    vision_routing: VisionRouting = env("VISION_ROUTING", "auto", _parse_choice(VisionRouting))
    # auto: the vision model serves a request with an image in the last this-many human turns
    # (user messages with text, not only tool results), if the request fits it.
    image_age_threshold: int = env("IMAGE_AGE_THRESHOLD", "3", _int)
    image_description_max_tokens: int = env("IMAGE_DESCRIPTION_MAX_TOKENS", "800", _positive_int)
    # Descriptions are kept this long in the shared store (a session can last a day).
    image_description_cache_ttl: float = env("IMAGE_DESCRIPTION_CACHE_TTL", "86400", _seconds)

    # --- context management (DESIGN.md §4): risk bands, output reserve, truncation, reporting
    enable_ai_condensation: bool = env("ENABLE_AI_CONDENSATION", "true", _parse_bool)
    condensation_caution_threshold: float = env("CONDENSATION_CAUTION_THRESHOLD", "0.70", _float)
    condensation_warning_threshold: float = env("CONDENSATION_WARNING_THRESHOLD", "0.80", _float)
    condensation_critical_threshold: float = env("CONDENSATION_CRITICAL_THRESHOLD", "0.90", _float)
    condensation_default_strategy: Strategy = env(
        "CONDENSATION_DEFAULT_STRATEGY", "conversation_summary", _parse_choice(Strategy)
    )
    # The model summaries are asked of; empty = AUTOTEXT_MODEL.
    condensation_model: str | None = env("CONDENSATION_MODEL", "", _parse_optional)
    condensation_min_messages: int = env("CONDENSATION_MIN_MESSAGES", "3", _positive_int)
    condensation_max_messages: int = env("CONDENSATION_MAX_MESSAGES", "10", _positive_int)
    condensation_timeout: float = env("CONDENSATION_TIMEOUT", "30", _seconds)
    condensation_cache_ttl: float = env("CONDENSATION_CACHE_TTL", "3600", _seconds)
    condensation_quality_threshold: float = env("CONDENSATION_QUALITY_THRESHOLD", "0.6", _float)
    condensation_max_summary_tokens: int = env(
        "CONDENSATION_MAX_SUMMARY_TOKENS", "2000", _positive_int
    )
    # Where condensation brings the effective conversation, as shares of the input budget.
    condensation_light_target: float = env("CONDENSATION_LIGHT_TARGET", "0.60", _float)
    condensation_aggressive_target: float = env("CONDENSATION_AGGRESSIVE_TARGET", "0.45", _float)
    # The shared store (summaries, locks): empty = embedded, shared by this host's workers
    # (in CACHE_DIR); redis://host:port/db = Redis, shared by every host.
    cache_url: str | None = env("CACHE_URL", "", _parse_optional, secret=True)
    cache_dir: str | None = env("CACHE_DIR", "", _parse_optional)
    # Learn each conversation's true size from the upstream's usage (issue 10).
    enable_usage_calibration: bool = env("ENABLE_USAGE_CALIBRATION", "true", _parse_bool)
    # Tokens kept free for the answer: input budget = window - min(max_tokens, this).
    output_reserve_tokens: int = env("OUTPUT_RESERVE_TOKENS", "8192", _positive_int)
    # Plain "drop the oldest turns until it fits" instead of keeping the task and shrinking.
    simple_truncation: bool = env("SIMPLE_TRUNCATION", "false", _parse_bool)
    usage_reporting: UsageReporting = env(
        "USAGE_REPORTING", "forwarded", _parse_choice(UsageReporting)
    )
    # Seconds between ": keepalive" comments while a stream waits for slow work upstream.
    keepalive_interval: float = env("KEEPALIVE_INTERVAL", "5", _seconds)
    context_cache_size: int = env("CONTEXT_CACHE_SIZE", "100", _positive_int)
    context_analysis_cache_ttl: float = env("CONTEXT_ANALYSIS_CACHE_TTL", "300", _seconds)
    enable_context_performance_logging: bool = env(
        "ENABLE_CONTEXT_PERFORMANCE_LOGGING", "false", _parse_bool
    )

    # --- logging and monitoring
    log_level: str = env("LOG_LEVEL", "INFO", _parse_level)
    # text: "time [pid] level logger [request-id] message"; json: one object per line (logs.py).
    log_format: LogFormat = env("LOG_FORMAT", "text", _parse_choice(LogFormat))
    # GET /metrics (Prometheus) and the per-request hooks that feed it.
    enable_metrics: bool = env("ENABLE_METRICS", "true", _parse_bool)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv: bool = False,
        only: Collection[str] | None = None,
    ) -> Settings:
        """Build Settings from a mapping (default os.environ); `dotenv` also reads `.env` first.

        `only` (field names): read just those, the rest left at their defaults and the whole not
        validated; for who needs a few settings before the app reads them all (gunicorn's
        logger in the master).
        """
        if environ is None:
            if dotenv:
                from dotenv import load_dotenv

                # The .env of the directory the server starts in; real env vars win over it.
                load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
            environ = os.environ
        values = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ and (only is None or f.name in only):
                values[f.name] = f.metadata["parse"](name, environ[name])
        settings = cls(**values)
        if only is None:
            settings.validate()
        return settings

    def validate(self) -> None:
        """Cross-field checks; raises ConfigError naming the variable."""
        self._validate_thresholds()
        self._validate_condensation()
        if self.proxy_api_keys and not self.server_api_key:
            raise ConfigError(
                "PROXY_API_KEYS is set but SERVER_API_KEY is empty: the proxy would have no key "
                "to call z.ai with"
            )

    def _validate_condensation(self) -> None:
        if not 0 <= self.condensation_quality_threshold <= 1:
            raise ConfigError(
                f"CONDENSATION_QUALITY_THRESHOLD={self.condensation_quality_threshold} "
                "must be in [0, 1]"
            )
        if self.condensation_min_messages > self.condensation_max_messages:
            raise ConfigError(
                f"CONDENSATION_MIN_MESSAGES={self.condensation_min_messages} must not exceed "
                f"CONDENSATION_MAX_MESSAGES={self.condensation_max_messages}"
            )
        targets = (
            ("CONDENSATION_AGGRESSIVE_TARGET", self.condensation_aggressive_target),
            ("CONDENSATION_LIGHT_TARGET", self.condensation_light_target),
        )
        for name, value in targets:
            if not 0 < value < 1:
                raise ConfigError(f"{name}={value} must be in (0, 1)")
        if self.condensation_aggressive_target > self.condensation_light_target:
            raise ConfigError(
                "CONDENSATION_AGGRESSIVE_TARGET must not exceed CONDENSATION_LIGHT_TARGET"
            )
        if self.cache_url and not self.cache_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("CACHE_URL must be a redis://, rediss:// or unix:// URL")

    def _validate_thresholds(self) -> None:
        bands = (
            ("CONDENSATION_CAUTION_THRESHOLD", self.condensation_caution_threshold),
            ("CONDENSATION_WARNING_THRESHOLD", self.condensation_warning_threshold),
            ("CONDENSATION_CRITICAL_THRESHOLD", self.condensation_critical_threshold),
        )
        for name, value in bands:
            if not 0 < value <= 1:
                raise ConfigError(f"{name}={value} must be in (0, 1]")
        for (low_name, low), (high_name, high) in zip(bands, bands[1:], strict=False):
            if low >= high:
                raise ConfigError(f"{low_name}={low} must be below {high_name}={high}")

    @property
    def counting_is_legacy(self) -> bool:
        """The chars/4 rollback switch (either legacy variable)."""
        return self.legacy_token_estimation or not self.enable_accurate_token_counting

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show on /health: secrets reduced to whether they are set."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"]:
                shown[f.name + "_set"] = bool(value)
            elif isinstance(value, enum.Enum):
                shown[f.name] = value.value
            else:
                shown[f.name] = value
        return shown
