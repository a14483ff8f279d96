"""Send fuzz cases through the app's test client and judge each answer (and what z.ai saw).

A `FuzzRun` holds the app's test client and the fake z.ai behind it. `send(case)` posts one
case and returns its problems: an answer a client could not read (`tests.client_answers`), a
valid body that did not get a 2xx, an exception that escaped the app, or a body the proxy
forwarded that the strict fake refused (the proxy must answer such a body with a 4xx itself;
only an overflow that its one retry fixed is fine).
It keeps a status histogram per path for the benchmark's report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from flask.testing import FlaskClient

from tests.client_answers import answer_problems
from tests.fake_upstream import FakeUpstream
from tests.fuzz_bodies import Case


@dataclass
class FuzzRun:
    """Posts cases to the app and tallies status per path."""

    client: FlaskClient
    fake: FakeUpstream
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        """How many requests were posted so far."""
        return sum(sum(counts.values()) for counts in self.statuses.values())

    def send(self, case: Case, path: str | None = None) -> list[str]:
        """Post `case` (to `path`, default the case's own) and return what is wrong, if anything."""
        path = path or case.path
        self.fake.reset()
        try:
            reply = self.client.post(
                path, data=case.body, headers=case.headers, content_type="application/json"
            )
            data = reply.get_data()  # runs a streamed answer to its end
        except Exception as exc:  # the app must answer everything; report, don't crash the run
            self.statuses[path][0] += 1
            return [f"exception escaped the app: {exc!r}"]
        self.statuses[path][reply.status_code] += 1
        self.kinds[case.kind] += 1
        problems = answer_problems(path, reply.status_code, reply.content_type or "", data)
        if case.valid and reply.status_code >= 300:
            problems.append(f"a valid body got {reply.status_code}: {data[:300]!r}")
        return problems + self._rejections(reply.status_code, data)

    def _rejections(self, status: int, data: bytes) -> list[str]:
        """Bodies the fake refused. An overflow answer (the body passed every rule; only its
        size did not) is the proxy's designed one-retry path, fine when the retry then
        succeeded; any other refusal is a body the proxy should have answered 4xx itself."""
        problems = []
        for record in self.fake.requests:
            overflow = record.status == 400 and record.input_tokens > 0
            if record.status != 200 and not (overflow and status < 300):
                what = "overflowed and no retry fixed it" if overflow else "was refused"
                problems.append(f"a forwarded body {what} ({record.status}): {data[:300]!r}")
        return problems
