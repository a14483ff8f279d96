"""Quick API test of a running proxy: the migration guide's last validation step.

    python test_api_simple.py [--url http://localhost:5000] [--key KEY] [--model glm-4.6]

Sends one request of each kind a client makes: /health, /v1/models, count_tokens, a chat
completion (plain and streamed) and a Messages call (plain and streamed). It prints what came
back and exits 0 when every answer has the shape its client expects. The key comes from --key or
the first of PROXY_TEST_KEY, ZAI_API_KEY, ANTHROPIC_AUTH_TOKEN that is set; it is never printed.
The two completions and two Messages calls reach z.ai and cost a few tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import requests

from upstream.sse import iter_sse

KEY_VARIABLES = ("PROXY_TEST_KEY", "ZAI_API_KEY", "ANTHROPIC_AUTH_TOKEN")
PROMPT = "Reply with the single word: pong"
TIMEOUT = 120


class Proxy:
    """A session against the proxy with the client's key in both header styles."""

    def __init__(self, url: str, key: str, model: str) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {key}", "x-api-key": key})

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=TIMEOUT)

    def post(self, path: str, body: dict[str, Any], stream: bool = False) -> requests.Response:
        return self.session.post(self.url + path, json=body, stream=stream, timeout=TIMEOUT)

    def chat_body(self, **extra: Any) -> dict[str, Any]:
        messages = [{"role": "user", "content": PROMPT}]
        return {"model": self.model, "messages": messages, "max_tokens": 64, **extra}


def sse_data(response: requests.Response) -> Iterator[Any]:
    """The JSON payload of every event of a stream, decoded as the proxy decodes z.ai's."""
    for event in iter_sse(response.iter_content(chunk_size=None)):
        if event.data == "[DONE]":
            return
        yield event.json()


def check_health(proxy: Proxy) -> str:
    reply = proxy.get("/health")
    reply.raise_for_status()
    return f"status {reply.json()['status']}, version {reply.json()['version']}"


def check_models(proxy: Proxy) -> str:
    reply = proxy.get("/v1/models")
    reply.raise_for_status()
    ids = [model["id"] for model in reply.json()["data"]]
    assert proxy.model in ids, f"{proxy.model} not listed: {ids}"
    return ", ".join(ids)


def check_count_tokens(proxy: Proxy) -> str:
    reply = proxy.post("/v1/messages/count_tokens", proxy.chat_body())
    reply.raise_for_status()
    tokens = reply.json()["input_tokens"]
    assert isinstance(tokens, int) and tokens > 0, reply.text
    return f"{tokens} input tokens"


def check_chat(proxy: Proxy) -> str:
    reply = proxy.post("/v1/chat/completions", proxy.chat_body())
    reply.raise_for_status()
    body = reply.json()
    text = body["choices"][0]["message"]["content"]
    assert isinstance(text, str) and text, body
    return f"{text.strip()[:40]!r}, usage {body['usage']['total_tokens']} tokens"


def check_chat_stream(proxy: Proxy) -> str:
    with proxy.post("/v1/chat/completions", proxy.chat_body(stream=True), stream=True) as reply:
        reply.raise_for_status()
        chunks = list(sse_data(reply))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text, chunks[-3:]
    return f"{len(chunks)} chunks, {text.strip()[:40]!r}"


def check_messages(proxy: Proxy) -> str:
    reply = proxy.post("/v1/messages", proxy.chat_body())
    reply.raise_for_status()
    body = reply.json()
    text = "".join(block.get("text", "") for block in body["content"])
    assert body["type"] == "message" and text, body
    return f"{text.strip()[:40]!r}, stop_reason {body['stop_reason']}"


def check_messages_stream(proxy: Proxy) -> str:
    with proxy.post("/v1/messages", proxy.chat_body(stream=True), stream=True) as reply:
        reply.raise_for_status()
        events = list(sse_data(reply))
    kinds = [event["type"] for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    return f"{len(events)} events, {text.strip()[:40]!r}"


CHECKS: dict[str, Callable[[Proxy], str]] = {
    "GET /health": check_health,
    "GET /v1/models": check_models,
    "POST /v1/messages/count_tokens": check_count_tokens,
    "POST /v1/chat/completions": check_chat,
    "POST /v1/chat/completions (stream)": check_chat_stream,
    "POST /v1/messages": check_messages,
    "POST /v1/messages (stream)": check_messages_stream,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PROXY_URL", "http://localhost:5000"))
    parser.add_argument("--key", help="a z.ai key, or one of PROXY_API_KEYS")
    parser.add_argument("--model", default="glm-4.6")
    args = parser.parse_args(argv)
    key = args.key or next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
    if not key:
        parser.error(f"no key: pass --key or set one of {', '.join(KEY_VARIABLES)}")
    proxy = Proxy(args.url, key, args.model)
    print(f"proxy {proxy.url}, model {proxy.model}")
    failures = 0
    for name, check in CHECKS.items():
        try:
            print(f"  [ok]   {name}: {check(proxy)}")
        except (requests.RequestException, AssertionError, KeyError, ValueError) as exc:
            failures += 1
            detail = getattr(getattr(exc, "response", None), "text", "") or exc
            print(f"  [FAIL] {name}: {type(exc).__name__}: {str(detail)[:300]}")
    print("all checks passed" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
