"""Images in long sessions (issue 12), under gunicorn against the strict fake z.ai.

The fake's vision model answers a description request with what it "sees" (the image's format,
pixel size and a digest of its bytes, `tests.fake.describer`), so a description can be followed
from the call that made it into every later request that carries it. Shown here:

- a ~120k-token agent session whose latest turn carries a screenshot: one description call
  holding the image; the text model gets the whole session (not cut to the vision window) with
  the description in place; the next turn makes no call and carries the same description;
- a ~10k-token session with an image goes to the vision model whole;
- an image four human turns old is gone from the forwarded request, its description there (a
  stream: the description is made behind keepalives);
- a failing description call still yields a 200: a placeholder (describe), or the vision model
  when the request fits it (auto);
- two workers needing one description at once make one call between them.

Run with -s to read each case's context_info.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake.describer import image_digest
from tests.fake.plans import RecordedRequest
from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import Gunicorn
from tests.prometheus_text import parse_samples, value
from tests.sessions import agent_session, image_block, old_image_session

KEY = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
SCREENSHOT = image_block(640, 400)
VISION_WINDOW = 65_536
Json = dict[str, Any]


def described(block: Json) -> str:
    """The description block the fake's vision model leads to for an image block."""
    raw = base64.b64decode(block["source"]["data"])
    return f"[Image: A 640x400 PNG image (fake vision; bytes sha256 {image_digest(raw)}).]"


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream) -> Iterator[Gunicorn]:
    with Gunicorn(proxy_env(fake, CONDENSATION_TIMEOUT="10"), workers=2, threads=4) as running:
        yield running


def send(proxy: Gunicorn, body: Json) -> Json:
    reply = requests.post(proxy.url + "/v1/messages", json=body, headers=KEY, timeout=120)
    assert reply.status_code == 200, reply.text
    answer: Json = reply.json()
    show(answer["context_info"])
    return answer


def show(info: Json) -> None:
    fields = ("model", "endpoint", "vision_routing", "images_described", "images_forwarded",
              "estimated_input_tokens", "risk_level", "truncated")  # fmt: skip
    shown = json.dumps({k: info[k] for k in fields})
    print("[images] context_info", shown)  # noqa: T201 - the closing note quotes these


def completions(fake: FakeUpstream) -> list[RecordedRequest]:
    """The requests that were not description calls."""
    return [r for r in fake.requests if "description_request" not in r.notes]


def has_image_bytes(body: Json) -> bool:
    text = json.dumps(body)
    return '"image_url"' in text or '"type": "image"' in text


def human(text: str, *extra: Json) -> Json:
    return {"role": "user", "content": [{"type": "text", "text": text}, *extra]}


def reply(text: str = "Done.") -> Json:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def screenshot_session(tokens: int, seed: int, question: str) -> Json:
    """An agent session of about `tokens` whose latest turn is a question with SCREENSHOT."""
    body = agent_session(tokens, seed=seed, end_with="human")
    body["messages"][-1] = human(question, SCREENSHOT)
    return body


# ---------------------------------------------------------------------------- long session


def test_a_screenshot_after_120k_tokens_is_described_once_for_the_text_model(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    body = screenshot_session(120_000, 12, "The build fails like this, what now?")
    answer = send(proxy, body)

    [call] = fake.description_requests
    assert call.endpoint == "openai" and call.body["model"] == "glm-4.6v"
    parts = call.body["messages"][-1]["content"]
    url = f"data:image/png;base64,{SCREENSHOT['source']['data']}"
    assert [p["image_url"]["url"] for p in parts if p["type"] == "image_url"] == [url]
    assert "The build fails like this" in json.dumps(call.body)  # the message text as context

    [text] = completions(fake)
    assert (text.endpoint, text.body["model"]) == ("anthropic", "glm-4.6")
    assert not has_image_bytes(text.body)
    assert len(text.body["messages"]) == len(body["messages"])  # the whole session
    assert text.input_tokens > VISION_WINDOW
    assert text.body["messages"][-1]["content"][-1] == {
        "type": "text",
        "text": described(SCREENSHOT),
    }
    info = answer["context_info"]
    assert (info["model"], info["images_described"], info["images_forwarded"]) == ("glm-4.6", 1, 0)
    assert info["vision_routing"] == "auto" and info["truncated"] is False
    assert answer["content"][0]["text"].startswith("echo:")  # one answer, from the text model

    fake.reset()
    body["messages"] += [reply("Try a clean build."), human("It still fails. Any other idea?")]
    again = send(proxy, body)
    assert fake.description_requests == []  # no vision call on the next turn
    [text] = completions(fake)
    assert text.body["messages"][-3]["content"][-1]["text"] == described(SCREENSHOT)
    assert again["context_info"]["images_described"] == 1


def test_a_short_session_with_an_image_goes_to_the_vision_model_whole(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    body = screenshot_session(10_000, 13, "What does this dialog say?")
    answer = send(proxy, body)
    assert fake.description_requests == []
    [call] = fake.requests
    assert (call.endpoint, call.body["model"]) == ("openai", "glm-4.6v")
    assert has_image_bytes(call.body)
    # the whole session: every tool call of it is there (the OpenAI format carries tool results
    # as messages of their own, so the message counts differ)
    blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    ids = {b["id"] for b in blocks if b["type"] == "tool_use"}
    sent = {t["id"] for m in call.body["messages"] for t in m.get("tool_calls") or []}
    assert ids and sent == ids
    info = answer["context_info"]
    assert (info["model"], info["images_described"], info["images_forwarded"]) == (
        "glm-4.6v", 0, 1,
    )  # fmt: skip
    assert info["truncated"] is False


def test_an_image_four_human_turns_old_is_replaced_by_its_description(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    image = image_block(640, 400)
    with requests.post(
        proxy.url + "/v1/messages",
        json=old_image_session(image) | {"stream": True},
        headers=KEY,
        stream=True,
        timeout=60,
    ) as stream:
        assert stream.status_code == 200
        lines = [line for line in stream.iter_lines() if line]
    assert lines[-1].startswith(b"data:") and b"message_stop" in lines[-1]
    delta = next(json.loads(line[6:]) for line in lines if b'"message_delta"' in line)
    show(delta["context_info"])
    assert delta["context_info"]["images_described"] == 1
    assert len(fake.description_requests) == 1
    [text] = completions(fake)
    assert text.body["model"] == "glm-4.6" and not has_image_bytes(text.body)
    assert text.body["messages"][0]["content"][1] == {"type": "text", "text": described(image)}


# ---------------------------------------------------------------------------- failures


def test_a_failing_description_call_still_answers_with_a_placeholder(
    fake: FakeUpstream,
) -> None:
    fake.fail_next("http_error", status=500, endpoint="openai")
    env = proxy_env(fake, VISION_ROUTING="describe")
    with Gunicorn(env, workers=1, threads=2) as proxy:
        body = {"model": "glm-4.6", "max_tokens": 256,
                "messages": [human("What is on this screen?", SCREENSHOT)]}  # fmt: skip
        answer = send(proxy, body)
        log = proxy.log_text()
    [text] = completions(fake)
    assert text.body["model"] == "glm-4.6" and not has_image_bytes(text.body)
    placeholder = {"type": "text", "text": "[Image: description unavailable]"}
    assert text.body["messages"][0]["content"][-1] == placeholder
    assert answer["context_info"]["vision_routing"] == "describe"
    assert "IMAGE description failed" in log


def test_a_failing_description_in_auto_sends_a_request_that_fits_to_the_vision_model(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    fake.fail_next("http_error", status=500, endpoint="openai")
    answer = send(proxy, old_image_session(image_block(320, 200)))
    calls = fake.requests
    assert [("description_request" in r.notes, r.status) for r in calls] == [
        (True, 500),
        (False, 200),
    ]
    assert calls[1].body["model"] == "glm-4.6v" and has_image_bytes(calls[1].body)
    assert answer["context_info"]["images_forwarded"] == 1


# ---------------------------------------------------------------------------- shared store


def test_two_workers_needing_one_description_make_one_call(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """Each worker under its own master (so each request surely lands on a different one),
    sharing the host's store as a master's workers do."""
    fake.fail_next("timeout", seconds=1.0, endpoint="openai")  # the call takes a while
    env = proxy_env(fake, CACHE_DIR=str(tmp_path / "store"))
    image = image_block(640, 400)
    body = old_image_session(image)
    with (
        Gunicorn(env, workers=1, threads=2) as first,
        Gunicorn(env, workers=1, threads=2) as second,
    ):
        answers: list[Json] = []
        threads = [
            threading.Thread(target=lambda p=p: answers.append(send(p, body)))
            for p in (first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        health = [requests.get(p.url + "/health", timeout=5).json() for p in (first, second)]
        scraped = [parse_samples(requests.get(p.url + "/metrics", timeout=5).text)
                   for p in (first, second)]  # fmt: skip
    assert len(answers) == 2
    assert len(fake.description_requests) == 1
    texts = completions(fake)
    assert len(texts) == 2
    assert all(t.body["messages"][0]["content"][1]["text"] == described(image) for t in texts)
    stats = [h["context"]["image_descriptions"] for h in health]
    assert sorted((s["made"], s["cache_hits"]) for s in stats) == [(0, 1), (1, 0)]
    assert max(s["hit_ratio"] for s in stats) == 1.0
    name = "anthropic_proxy_image_descriptions_total"
    assert [sum(value(m, name, result=r) for m in scraped) for r in ("made", "cache_hit")] == [1, 1]
