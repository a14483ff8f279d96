"""gunicorn settings: server knobs (bind, workers, threads) and the shared metrics directory.

The app reads its own Settings; this file reads only what gunicorn needs before the app loads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import re
import select
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker


def _whole_number(name: str, default: str) -> int:
    """An integer setting from the environment; anything else stops start-up naming it."""
    text = os.environ.get(name, "").strip() or default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {text!r}")
    return value


# --- where to listen
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"

# --- concurrency
# gthread: each worker serves many requests in threads, which suits a proxy that spends its time
# waiting on the upstream. Streams hold a thread for their whole length (minutes, while GLM
# thinks), so threads x workers bound the concurrent streams: 2 x 128 serves 200 with room to
# spare, as connections never split exactly evenly between workers (benchmarks/load.py: 2 x 16
# queued 200 streams for 16 s at the median; 2 x 100 left a tail of one stream's length).
# UPSTREAM_POOL_SIZE (default 128) should stay >= threads, one pooled upstream connection each.
worker_class = "gthread"
workers = _whole_number("WEB_CONCURRENCY", "2")
threads = _whole_number("GUNICORN_THREADS", "128")

# --- timeouts
# In gthread the worker's main loop keeps heartbeating while threads stream, so `timeout` only
# catches a wedged worker; a 10-minute stream is fine. keepalive matches typical client pools.
timeout = _whole_number("GUNICORN_TIMEOUT", "120")
# On SIGTERM (shutdown) and for the old workers of a HUP reload, streams under way get this long
# to finish; then the master kills what is left. An agent's stream lasts minutes while GLM
# thinks, so the default matches REQUEST_TIMEOUT's 300 s, not gunicorn's 30. Whatever stops
# the server (docker stop, Kubernetes) must wait at least this long before it kills it.
graceful_timeout = _whole_number("GUNICORN_GRACEFUL_TIMEOUT", "300")
keepalive = 5

# --- logging: access log to stdout, errors to stderr, as containers expect; both in LOG_FORMAT
# (text or json), with the request id, through the redactor (logs.py)
logger_class = "logs.GunicornLogger"
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# --- memory: few malloc arenas
# glibc gives each thread that allocates its own arena (up to 8 per core), and an arena keeps the
# pages a large request touched even after they are freed and trimmed: with 128 threads a worker
# grew ~60 MB for every 30 MB body that landed on a fresh thread (benchmarks/memory.py). Two
# arenas per process bound that to one such block per arena; Python's own allocator serves the
# small objects, under the GIL, so the arenas see little contention. Set here, in the master,
# before the workers fork; MALLOC_ARENA_MAX in the environment (read by glibc) wins.
_M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
_MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None  # not glibc (musl has no arenas to limit)
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, _MALLOC_ARENAS)


_limit_malloc_arenas()

# --- metrics (prometheus_client multiprocess mode)
# Every worker writes its metric values to files in PROMETHEUS_MULTIPROC_DIR and /metrics sums
# them, so a scrape shows all workers whichever one answers it. prometheus_client chooses this
# mode when it is imported, so the variable is set here, in the master, before workers fork and
# load the app. Unset: a fresh temporary directory per server start, removed when it stops
# (the marker variable remembers that across a HUP reload, which runs this file again).
_OWNED_MARKER = "ANTHROPIC_PROXY_OWNS_METRICS_DIR"
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
if not _metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="anthropic-proxy-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    os.environ[_OWNED_MARKER] = _metrics_dir


# The value files prometheus_client writes: counter_<pid>.db, gauge_<mode>_<pid>.db, ...
_VALUE_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def on_starting(server: Arbiter) -> None:
    """Start the metrics from zero: drop the value files an earlier server left behind.

    A directory that holds other *.db files is refused, not emptied: a scrape reads every
    *.db there, and they may be somebody's data.
    """
    os.makedirs(_metrics_dir, exist_ok=True)
    names = [os.path.basename(path) for path in glob.glob(os.path.join(_metrics_dir, "*.db"))]
    foreign = sorted(name for name in names if not _VALUE_FILE.fullmatch(name))
    if foreign:
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR={_metrics_dir!r} holds files that are not "
            f"prometheus_client's ({', '.join(foreign[:3])}): give the metrics a directory "
            "of their own"
        )
    for name in names:
        os.remove(os.path.join(_metrics_dir, name))
    server.log.info("metrics dir %s (%d stale files removed)", _metrics_dir, len(names))


def child_exit(server: Arbiter, worker: Worker) -> None:
    """Tell prometheus_client a worker is gone (drops its live gauges; counters keep counting)."""
    del server
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


def pre_exec(server: Arbiter) -> None:
    """A USR2 upgrade: the new master makes a metrics directory of its own.

    gunicorn starts it with the environment of the last config load, which after a HUP holds
    the directory this master made, and this master removes that directory when it exits:
    every worker the new master booted after that would fail to write its metrics file.
    """
    if os.environ.get(_OWNED_MARKER) == _metrics_dir:
        for name in ("PROMETHEUS_MULTIPROC_DIR", _OWNED_MARKER):
            server.cfg.env_orig.pop(name, None)


def on_exit(server: Arbiter) -> None:
    """Remove the metrics directory if this file created it."""
    del server
    if os.environ.get(_OWNED_MARKER) == _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


# At most this many queued connections a stopping worker takes before it lets go of the socket
# (during a reload new ones keep coming, and the new workers take those).
_LAST_ACCEPTS = 64


def post_worker_init(worker: Worker) -> None:
    """A stopping worker lets go of the listening socket at once, not after its last stream.

    On SIGTERM a gthread worker stops accepting but keeps its copy of the listening socket open
    until its streams have finished, up to graceful_timeout. At shutdown the master has closed
    its own copy already, so for all that time the kernel still completes the handshake of new
    connections that nobody will accept: a client hangs until the drain ends, then is reset.
    Closing the worker's copy when it stops accepting leaves the socket to whoever else holds
    it: the master and the new workers during a HUP reload (they go on serving), nobody at
    shutdown (new connections are then refused at once). Connections already queued on it are
    accepted first and served, with "Connection: close", as the worker serves any request once
    it is stopping.

    This wraps gthread's own switch (gunicorn 27's ThreadWorker.set_accept_enabled, called with
    False as the worker's main loop ends); a worker class without it is left as it is.
    """
    switch = getattr(worker, "set_accept_enabled", None)
    accept = getattr(worker, "accept", None)
    if switch is None or accept is None:
        return

    def set_accept_enabled(enabled: bool) -> None:
        switch(enabled)
        if enabled or worker.alive:
            return  # accepting, or paused at worker_connections: the socket stays
        for listener in worker.sockets:
            try:
                for _ in range(_LAST_ACCEPTS):
                    if not select.select([listener], [], [], 0)[0]:
                        break
                    accept(listener)  # non-blocking; gunicorn's own accept, into the pool
            except (OSError, ValueError):
                pass  # closed already
            listener.close()

    worker.set_accept_enabled = set_accept_enabled
