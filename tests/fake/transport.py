"""The HTTP side of the fake: a threaded server and a handler that sends plans and faults."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any

from tests.fake.plans import Fault, Plan, json_plan

if TYPE_CHECKING:
    from tests.fake.upstream import FakeUpstream

logger = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can close them."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under concurrency (1 s retransmit stalls).
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], fake: FakeUpstream) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall for seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("fake upstream failed on a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the fake for a plan, and sends it (faults included)."""

    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server: Server

    def setup(self) -> None:
        super().setup()
        # Each SSE event is its own small write; Nagle would hold them back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(json_plan(400, {"error": "unreadable request body"}))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        with fake.in_flight(self.path, headers) as refusal:
            self._send(refusal or fake.plan(self.command, self.path, headers, raw))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    # ------------------------------------------------------------------------ sending

    def _send(self, plan: Plan) -> None:
        fault = plan.fault
        if (
            fault is not None
            and fault.kind == "timeout"
            and self.server.stopping.wait(fault.seconds)
        ):
            fault = Fault("disconnect")  # the server is stopping: don't answer
        if fault is not None and fault.kind == "disconnect":
            self.close_connection = True
            return
        if plan.frames is None:
            self._send_body(plan, fault)
        else:
            self._send_frames(plan, fault)

    def _head(self, plan: Plan, framing: tuple[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {plan.status} {HTTPStatus(plan.status).phrase}", "Server: fake-zai"]
        lines += [f"{name}: {value}" for name, value in (*plan.headers, framing)]
        if self.close_connection and framing[0] != "Connection":
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_body(self, plan: Plan, fault: Fault | None) -> None:
        head = self._head(plan, ("Content-Length", str(len(plan.body))))
        if fault is not None and fault.kind == "slow_stream":
            self._pause(fault.delay)
        if fault is not None and fault.kind == "hold":
            with self.server.fake._holding():
                self._wait_for_release(fault)
        if fault is not None and fault.kind == "stream_drop":
            self.wfile.write(head + plan.body[: len(plan.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(head + plan.body)

    def _send_frames(self, plan: Plan, fault: Fault | None) -> None:
        try:
            self._write_stream(plan, fault)
        except (BrokenPipeError, ConnectionResetError):
            # The client closed its end mid-stream (not us stopping: that is ConnectionAborted).
            self.server.fake._note_aborted(plan.record)
            self.close_connection = True

    def _write_stream(self, plan: Plan, fault: Fault | None) -> None:
        frames = plan.frames or []
        kind = fault.kind if fault is not None else None
        delay = fault.delay if fault is not None and kind == "slow_stream" else None
        delay = self.server.fake.event_delay if delay is None else delay
        # A drop always leaves out the final events (message_stop / finish chunk and [DONE]).
        end = min(fault.after, len(frames) - 2) if fault and kind == "stream_drop" else len(frames)
        if self.server.fake.close_delimited:
            # HTTP/1.0 style: no framing, the stream ends when the connection closes.
            self.close_connection = True
            self.wfile.write(self._head(plan, ("Connection", "close")))
        else:
            self.wfile.write(self._head(plan, ("Transfer-Encoding", "chunked")))
        start = 0
        if fault is not None and kind == "hold":
            # Held before the final event at the latest, so a held stream is visibly unfinished.
            start = max(0, min(fault.after, len(frames) - 1))
            with self.server.fake._holding():
                self._write_frames(frames[:start], 0, delay)
                self._wait_for_release(fault)
        self._write_frames(frames[start:end], start, delay)
        if end < len(frames) or self.server.fake.close_delimited:
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _write_frames(self, frames: list[bytes], first: int, delay: float) -> None:
        """Write frames as chunks, `delay` apart (none before the stream's very first frame)."""
        raw = self.server.fake.close_delimited
        for index, frame in enumerate(frames, start=first):
            if delay and index:
                self._pause(delay)
            self.wfile.write(frame if raw else b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()

    def _wait_for_release(self, fault: Fault) -> None:
        fault.gate.wait(fault.seconds)
        if self.server.stopping.is_set():
            raise ConnectionAbortedError("fake upstream is stopping")

    def _pause(self, seconds: float) -> None:
        if self.server.stopping.wait(seconds):
            raise ConnectionAbortedError("fake upstream is stopping")
