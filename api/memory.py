"""Give memory back to the OS after a large request.

A 30 MB body becomes ~200 MB of Python objects while it is parsed, counted and cut. Python frees
them, but glibc keeps freed heap pages in the arena of the thread that used them, and a gthread
worker has a hundred threads, so each large request would leave its own arena swollen: RSS
climbed by ~60 MB per 30 MB body and stayed (benchmarks/memory.py). `malloc_trim` hands the free
pages back. It runs only once a request with a large body has finished (its response closed,
streams included), so ordinary requests pay nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

from flask import Flask, Response, request

logger = logging.getLogger(__name__)

# Bodies from this size on are followed by a trim: well above a 150k-token session (~1 MB).
TRIM_AFTER_BYTES = 4 * 1024 * 1024


def find_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0) as a function, or None where the C library has none (musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int

    def trim() -> None:
        malloc_trim(0)  # 1 if memory went back, 0 if there was none to give: either is fine

    return trim


def register_memory_trim(app: Flask, threshold: int = TRIM_AFTER_BYTES) -> bool:
    """Trim the heap after each response to a body of `threshold` bytes or more.

    False when this C library has no malloc_trim."""
    trim = find_trim()
    if trim is None:
        logger.info("malloc_trim is not available: memory after large bodies is left to libc")
        return False

    @app.after_request
    def trim_after_large_body(response: Response) -> Response:
        size = request.content_length or 0
        if size >= threshold:
            response.call_on_close(lambda: _trim_logged(trim, size))
        return response

    return True


def _trim_logged(trim: Callable[[], None], size: int) -> None:
    trim()
    logger.debug("heap trimmed after a %d-byte body", size)
