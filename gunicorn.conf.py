"""gunicorn settings: server knobs only (bind, workers, threads); the app reads Settings itself."""

import os

# --- where to listen
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"

# --- concurrency
# gthread: each worker serves many requests in threads, which suits a proxy that spends its time
# waiting on the upstream. Streams hold a thread for their whole length, so threads, not
# workers, bound the number of concurrent conversations. UPSTREAM_POOL_SIZE (default 32) should
# stay >= threads so every thread keeps a pooled upstream connection.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))

# --- timeouts
# In gthread the worker's main loop keeps heartbeating while threads stream, so `timeout` only
# catches a wedged worker; a 10-minute stream is fine. graceful_timeout lets streams finish on
# reload. keepalive matches typical client pools.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5

# --- logging: access log to stdout, errors to stderr, as containers expect
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
