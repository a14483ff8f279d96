"""OpenAI chat.completion.chunk streams: parse the upstream's, render the client's."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from upstream import canonical as c
from upstream.openai_format.response import parse_usage, render_usage
from upstream.openai_format.terms import (
    DONE,
    FINISH_TO_STOP,
    NETWORK_ERROR,
    STOP_TO_FINISH,
    completion_id,
    new_tool_id,
    tool_arguments,
)
from upstream.sse import SSEEvent, encode_sse

logger = logging.getLogger(__name__)


def parse_stream(events: Iterable[SSEEvent], input_estimate: int) -> Iterator[c.StreamEvent]:
    """Turn chat.completion.chunk events into canonical stream events, one by one."""
    state = _StreamState(input_estimate)
    for event in events:
        if event.data.strip() == DONE:
            break
        chunk = json.loads(event.data)
        if isinstance(chunk, dict) and chunk.get("error"):
            yield c.upstream_error_event(chunk["error"])
            return
        yield from state.feed(chunk)
        if state.failed:
            return
        if state.complete:
            # The finish reason and the usage are in: the answer is whole. Waiting for [DONE]
            # would leave the client hanging on an upstream that stalls before sending it.
            break
    yield from state.finish()


class _StreamState:
    """Folds chunks into open canonical blocks.

    Text and thinking stream live. The first tool call streams live; deltas of any other call are
    held until the open block closes, because canonical blocks are contiguous and z.ai may
    interleave parallel calls. Clients act on tool calls only at the end of the message anyway.
    """

    def __init__(self, input_estimate: int) -> None:
        self.input_estimate = input_estimate
        self.started = False
        self.next_index = 0
        self.open_kind: str | None = None  # "text", "thinking" or "tool"
        self.open_call: int | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # OpenAI index → {"id","name","args","done"}
        self.stop_reason: c.StopReason | None = None
        self.usage: c.Usage = {"input_tokens": 0, "output_tokens": 0}
        self.failed = False
        self.complete = False  # the finish reason and the usage after it have arrived

    def feed(self, chunk: dict[str, Any]) -> Iterator[c.StreamEvent]:
        if not self.started:
            self.started = True
            yield self._message_start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = parse_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if reasoning := delta.get("reasoning_content"):
                yield from self._stream_text("thinking", reasoning)
            if text := delta.get("content"):
                yield from self._stream_text("text", text)
            # An empty `tool_calls: []` is the same as none.
            for call in delta.get("tool_calls") or []:
                yield from self._stream_call(call)
            if reason := choice.get("finish_reason"):
                if reason == NETWORK_ERROR:
                    self.failed = True
                    yield from self._close()
                    yield c.error_event("upstream reported a network error mid-generation")
                    return
                self.stop_reason = FINISH_TO_STOP.get(reason, "end_turn")
                yield from self._close()
        if self.stop_reason is not None and isinstance(chunk.get("usage"), dict):
            self.complete = True

    def finish(self) -> Iterator[c.StreamEvent]:
        if not self.started:
            yield c.error_event("upstream stream ended before any data")
            return
        yield from self._close()
        if self.stop_reason is None:
            yield c.error_event("upstream stream ended early")
            return
        yield {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": dict(self.usage),
        }
        yield {"type": "message_stop"}

    def _message_start(self, chunk: dict[str, Any]) -> c.MessageStartEvent:
        message: c.Response = {
            "id": str(chunk.get("id") or uuid.uuid4().hex),
            "type": "message",
            "role": "assistant",
            "model": str(chunk.get("model", "")),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
        }
        return {"type": "message_start", "message": message}

    def _start(self, kind: str, block: c.ContentBlock) -> c.ContentBlockStartEvent:
        self.open_kind = kind
        return {"type": "content_block_start", "index": self.next_index, "content_block": block}

    def _stream_text(self, kind: str, text: str) -> Iterator[c.StreamEvent]:
        if self.open_kind != kind:
            yield from self._close()
            empty: c.ContentBlock = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": ""}
            )
            yield self._start(kind, empty)
        delta = (
            {"type": "text_delta", "text": text}
            if kind == "text"
            else {"type": "thinking_delta", "thinking": text}
        )
        yield {"type": "content_block_delta", "index": self.next_index, "delta": delta}

    def _stream_call(self, raw: dict[str, Any]) -> Iterator[c.StreamEvent]:
        index = raw.get("index", len(self.calls))
        function = raw.get("function") or {}
        piece = function.get("arguments") or ""
        if index == self.open_call:
            if piece:
                yield self._args_delta(piece)
            return
        call = self.calls.get(index)
        if call is None:
            if self.open_kind != "tool":
                yield from self._close()
            call = self.calls[index] = {"id": None, "name": "", "args": "", "done": False}
        elif call["done"]:
            logger.debug("dropping arguments for tool call %s after its block closed", index)
            return
        call["id"] = call["id"] or raw.get("id")
        call["name"] = call["name"] or function.get("name") or ""
        call["args"] += piece
        if self.open_kind != "tool":
            yield from self._open_call(index)

    def _open_call(self, index: int) -> Iterator[c.StreamEvent]:
        call = self.calls[index]
        block: c.ToolUseBlock = {
            "type": "tool_use",
            "id": call["id"] or new_tool_id(),
            "name": call["name"],
            "input": {},
        }
        self.open_call = index
        yield self._start("tool", block)
        if call["args"]:
            yield self._args_delta(call["args"])
            call["args"] = ""

    def _args_delta(self, piece: str) -> c.ContentBlockDeltaEvent:
        delta = {"type": "input_json_delta", "partial_json": piece}
        return {"type": "content_block_delta", "index": self.next_index, "delta": delta}

    def _close(self) -> Iterator[c.StreamEvent]:
        """Close the open block; then emit any held tool calls, each whole."""
        if self.open_kind is not None:
            yield self._stop()
        if self.open_call is not None:
            self.calls[self.open_call]["done"] = True
            self.open_call = None
        for index, call in self.calls.items():
            if not call["done"]:
                yield from self._open_call(index)
                call["done"] = True
                self.open_call = None
                yield self._stop()

    def _stop(self) -> c.ContentBlockStopEvent:
        event: c.ContentBlockStopEvent = {"type": "content_block_stop", "index": self.next_index}
        self.open_kind = None
        self.next_index += 1
        return event


def render_stream(
    events: Iterable[c.StreamEvent], model: str, include_usage: bool
) -> Iterator[bytes]:
    """Write canonical stream events as chat.completion.chunk SSE frames, then `[DONE]`."""
    renderer = _ChunkRenderer(model)
    for event in events:
        for chunk in renderer.chunks_for(event, include_usage):
            yield encode_sse(chunk)
        if event["type"] in ("message_stop", "error"):
            break
    yield encode_sse(DONE)


class _ChunkRenderer:
    """Remembers what a chat.completion.chunk needs across events: ids, tool indices, usage."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = completion_id(uuid.uuid4().hex)
        self.created = int(time.time())
        self.tool_index = -1
        self.usage: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}  # fields the last chunk carries (context_info)

    def chunk(
        self, delta: dict[str, Any] | None, finish_reason: str | None = None
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunks_for(self, event: c.StreamEvent, include_usage: bool) -> list[dict[str, Any]]:
        # Each branch compares event["type"] itself, so the type checker narrows the event.
        if event["type"] == "message_start":
            self.id = completion_id(event["message"]["id"])
            self.usage = dict(event["message"]["usage"])
            return [self.chunk({"role": "assistant", "content": ""})]
        if event["type"] == "content_block_start":
            return self._block_start(event)
        if event["type"] == "content_block_delta":
            return self._block_delta(event)
        if event["type"] == "message_delta":
            self.usage.update(event.get("usage") or {})
            self.extra = {"context_info": event["context_info"]} if "context_info" in event else {}
            reason = STOP_TO_FINISH.get(event["delta"].get("stop_reason") or "end_turn", "stop")
            # context_info rides on the last chunk: this one, unless a usage chunk follows.
            return [self.chunk({}, reason) | ({} if include_usage else self.extra)]
        if event["type"] == "message_stop":
            if not include_usage:
                return []
            return [self.chunk(None) | {"usage": render_usage(self.usage)} | self.extra]
        if event["type"] == "error":
            error = event["error"]
            return [
                {
                    "error": {
                        "message": error.get("message", ""),
                        "type": error.get("type", "api_error"),
                    }
                }
            ]
        return []  # content_block_stop and ping carry nothing for chat-completions clients

    def _block_start(self, event: c.ContentBlockStartEvent) -> list[dict[str, Any]]:
        block = event["content_block"]
        if block["type"] != "tool_use":
            return []
        self.tool_index += 1
        call = {
            "index": self.tool_index,
            "id": block["id"],
            "type": "function",
            # Arguments that came whole in the block's start (no deltas follow) go out here.
            "function": {"name": block["name"], "arguments": tool_arguments(block["input"])},
        }
        return [self.chunk({"tool_calls": [call]})]

    def _block_delta(self, event: c.ContentBlockDeltaEvent) -> list[dict[str, Any]]:
        delta = event["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.chunk({"content": delta["text"]})]
        if kind == "thinking_delta":
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            call = {"index": self.tool_index, "function": {"arguments": delta["partial_json"]}}
            return [self.chunk({"tool_calls": [call]})]
        return []  # signature_delta has no OpenAI counterpart
