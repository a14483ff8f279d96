"""A strict local stand-in for z.ai's two upstream formats, for tests and benchmarks.

In process::

    with FakeUpstream() as fake:
        fake.script({"text": "hi", "usage": {"input_tokens": 7, "output_tokens": 2}})
        fake.fail_next("rate_limit", retry_after=3)
        requests.post(fake.anthropic_base + "/v1/messages", ...)
        assert fake.last.body["model"] == "glm-4.6"

As a process (integration tests, benchmarks)::

    python tests/fake_upstream.py --port 0      # prints its base URL as the first stdout line

and then script it over HTTP: ``POST /_fake/script``, ``POST /_fake/fault``, ``POST /_fake/config``,
``GET /_fake/requests``, ``POST /_fake/release``, ``POST /_fake/reset``.

It validates requests the way z.ai does (auth, known model, allowed fields, a valid conversation
per its own rules in `tests.fake.rules`, the context window) and answers with deterministic
replies: the next
scripted one, else ``"echo: <last user text>"``, rendered in the request's own format, streamed as
real SSE with one write per event. Faults can be injected for the next N valid requests; a
``hold`` fault parks a stream mid-way until ``release()``, and a stream whose writes fail because
the client went away is recorded as ``aborted`` (``wait_aborted()`` waits for one).

Token counting and the window (rules tests can rely on):

- Input tokens are GLM-4.6's: its tokenizer (``../shared/tokenizers/glm-4.6.tiktoken``) over its
  chat template rendered for the body (`tests.fake.glm`). Without the file, cl100k_base over the
  same rendered prompt. The count is ``usage.input_tokens`` / ``usage.prompt_tokens`` (the final
  usage chunk of a stream included) unless a scripted reply sets usage, and is recorded as
  ``RecordedRequest.input_tokens`` (alias ``estimated_tokens``).
- A request overflows when input tokens + its ``max_tokens`` (0 when absent) exceed the model's
  window, as z.ai rejects a prompt plus requested output over the model's max length. The answer
  is HTTP 400 with z.ai's body ``{"error":{"code":"1261","message":"Prompt exceeds max length"}}``.

The fake never imports the project's code, so a wrong rule in the proxy cannot pass its tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The fake lives in tests/fake/; this module is its entry point and re-exports its public names.
from tests.fake.checks import (  # noqa: E402
    ANTHROPIC_ERROR_TYPES,
    ANTHROPIC_FIELDS,
    OPENAI_FIELDS,
    OVERFLOW_BODY,
    anthropic_problems,
    error_body,
    last_prompt_text,
    openai_problems,
)
from tests.fake.constants import (  # noqa: E402
    ANTHROPIC_PREFIX,
    CHUNK_CHARS,
    DEFAULT_MODELS,
    DEFAULT_WINDOW,
    DEFAULT_WINDOWS,
    FINISH_REASONS,
    OPENAI_PREFIX,
    ROUTES,
    VISION_MODELS,
    Json,
)
from tests.fake.glm import count_input_tokens, glm_prompt, glm_tokens  # noqa: E402
from tests.fake.images import IMAGE_TOKENS  # noqa: E402
from tests.fake.plans import (  # noqa: E402
    FAULT_KINDS,
    REPLACING_FAULTS,
    Fault,
    Plan,
    RecordedRequest,
    json_plan,
)
from tests.fake.replies import (  # noqa: E402
    Exchange,
    Reply,
    ToolCall,
    default_reply,
    render_anthropic_message,
    render_anthropic_stream,
    render_openai_completion,
    render_openai_stream,
    sign_thinking,
)
from tests.fake.upstream import FakeUpstream  # noqa: E402

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "ANTHROPIC_FIELDS",
    "ANTHROPIC_PREFIX",
    "CHUNK_CHARS",
    "DEFAULT_MODELS",
    "DEFAULT_WINDOW",
    "DEFAULT_WINDOWS",
    "FAULT_KINDS",
    "FINISH_REASONS",
    "IMAGE_TOKENS",
    "OPENAI_FIELDS",
    "OPENAI_PREFIX",
    "OVERFLOW_BODY",
    "REPLACING_FAULTS",
    "ROUTES",
    "VISION_MODELS",
    "Exchange",
    "FakeUpstream",
    "Fault",
    "Json",
    "Plan",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "anthropic_problems",
    "count_input_tokens",
    "default_reply",
    "error_body",
    "glm_prompt",
    "glm_tokens",
    "json_plan",
    "last_prompt_text",
    "main",
    "openai_problems",
    "render_anthropic_message",
    "render_anthropic_stream",
    "render_openai_completion",
    "render_openai_stream",
    "sign_thinking",
]


# ---------------------------------------------------------------------------- script entry


def _window(text: str) -> tuple[str, int]:
    model, _, tokens = text.partition("=")
    if not model or not tokens.isdigit():
        raise argparse.ArgumentTypeError(f"expected MODEL=TOKENS, got {text!r}")
    return model, int(tokens)


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until interrupted; print its base URL first so a parent can read it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--window", type=_window, action="append", default=[], metavar="MODEL=TOKENS"
    )
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accept only these keys"
    )
    parser.add_argument("--chunk-chars", type=int, default=CHUNK_CHARS)
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--check-signatures", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    fake = FakeUpstream(
        args.host,
        args.port,
        windows=dict(args.window),
        api_keys=args.api_keys,
        chunk_chars=args.chunk_chars,
        event_delay=args.event_delay,
        check_signatures=args.check_signatures,
    )
    serve_announced(fake)


def serve_announced(fake: FakeUpstream) -> None:
    """Bind, print the base URL (a parent process reads that line), serve until interrupted."""
    fake._bind()
    print(fake.base_url, flush=True)  # noqa: T201 - the parent process reads this line
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
