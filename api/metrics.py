"""GET /metrics (Prometheus text format) and the hooks that count and time every request.

/metrics asks for no API key, even with PROXY_API_KEYS set: scrapers send none, and the figures
hold no secrets (no keys, no prompts, no client addresses). Scrapes are not counted themselves,
so a 15-second scrape interval does not drown the client traffic in requests_total.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST

from api.services import get_services
from metrics import Metrics

logger = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

METRICS_PATH = "/metrics"
# The label of every request that matched no route (404s, 405s): raw paths would let anyone
# create unbounded label values.
OTHER = "other"


@bp.get(METRICS_PATH)
def metrics() -> Response:
    services = get_services()
    assert services.metrics is not None  # the blueprint is registered only with metrics on
    return Response(services.metrics.render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)


def register_request_metrics(app: Flask, recorder: Metrics) -> None:
    """Count and time every request the app answers, except scrapes of /metrics."""

    def start_clock() -> None:
        g.metrics_started = time.perf_counter()

    def record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else OTHER
        started = g.get("metrics_started")
        if endpoint != METRICS_PATH and started is not None:
            # A metric that cannot be written (its multiprocess file gone, a full disk) must not
            # turn an answered request into a 500: Flask would re-run this hook on that error.
            try:
                recorder.record_request(
                    endpoint, response.status_code, time.perf_counter() - started
                )
            except Exception:
                logger.exception("request metrics failed (%s %s)", endpoint, response.status_code)
        return response

    app.before_request(start_clock)
    app.after_request(record)
