"""Over 200 malformed bodies: each gets a 4xx OpenAI-format error, none reaches z.ai, and the
gunicorn worker keeps serving good requests afterwards."""

from __future__ import annotations

import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn
from tests.malformed_bodies import VALID, malformed_bodies


def test_malformed_bodies_get_4xx_and_the_worker_keeps_serving(
    server: Gunicorn, fake: FakeUpstream
) -> None:
    bodies = malformed_bodies()
    assert len(bodies) >= 200
    failures = []
    with requests.Session() as session:
        session.headers.update(
            {"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
        )
        for raw in bodies:
            reply = session.post(server.url + "/v1/chat/completions", data=raw, timeout=10)
            error = (
                reply.json().get("error")
                if reply.headers.get("Content-Type", "").startswith("application/json")
                else None
            )
            if (
                not 400 <= reply.status_code < 500
                or not isinstance(error, dict)
                or not error.get("message")
            ):
                failures.append((reply.status_code, raw[:120]))
        assert failures == []
        assert fake.requests == [], "nothing malformed was forwarded upstream"
        fake.script("still here")
        good = session.post(server.url + "/v1/chat/completions", json=VALID, timeout=10)
        assert good.status_code == 200
        assert good.json()["choices"][0]["message"]["content"] == "still here"
    assert "Traceback" not in server.log_text()
