"""The application factory: build Settings and the long-lived objects once, register the rooms."""

from __future__ import annotations

from flask import Flask

import logs
from api import completions, health, models
from api import metrics as metrics_api
from api.errors import register_error_handlers
from api.memory import register_memory_trim
from api.request_ids import register_request_ids
from api.services import EXTENSION_KEY, Services
from condensation import build_condenser, build_store
from config import Settings
from context.calibration import Calibration
from context.manager import ContextManager
from metrics import Metrics
from tokens import build_counter
from upstream.client import build_upstream
from vision import build_describer


def create_app(settings: Settings | None = None) -> Flask:
    """Create the proxy app; without settings they are read from the environment and `.env`."""
    if settings is None:
        settings = Settings.from_env(dotenv=True)
    logs.configure(settings)
    app = Flask(__name__)
    # Werkzeug enforces the body limit even for chunked uploads that carry no Content-Length.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    register_request_ids(app)  # first: every other hook's log lines carry the id
    metrics = Metrics() if settings.enable_metrics else None
    # Summaries, corrections and the upstream gate's slots, shared by the host's workers.
    store = build_store(settings)
    upstream = build_upstream(
        settings,
        store,
        metrics.record_queue_wait if metrics else None,
        metrics.record_retry if metrics else None,
    )
    counter = build_counter(settings, metrics.record_token_cache if metrics else None)
    condenser = None
    if settings.enable_ai_condensation:
        condenser = build_condenser(settings, upstream, store, metrics)
    calibration = Calibration(store, settings.condensation_cache_ttl, counter.mode == "exact")
    describer = build_describer(settings, upstream, store, metrics)
    app.extensions[EXTENSION_KEY] = Services(
        settings=settings,
        upstream=upstream,
        context=ContextManager(settings, counter, condenser, metrics, calibration, describer),
        metrics=metrics,
    )
    for blueprint in (health.bp, models.bp, completions.bp):
        app.register_blueprint(blueprint)
    if metrics is not None:
        app.register_blueprint(metrics_api.bp)
        metrics_api.register_request_metrics(app, metrics)
    register_error_handlers(app)
    register_memory_trim(app)
    return app
