"""Real processes for integration tests: gunicorn (gthread) serving the app, nginx in front."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 20.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not become healthy at {url}:\n{log.read_text()[-3000:]}")


class Gunicorn:
    """gunicorn with the project's gunicorn.conf.py, on a free loopback port, with extra env."""

    def __init__(
        self, env: dict[str, str], workers: int = 2, threads: int = 8, script: bool = False
    ) -> None:
        """`script` runs the `gunicorn` console script rather than `python -m gunicorn`: a USR2
        upgrade re-runs the command line, and under -m the new master would find gunicorn's
        own `app` package before the project's."""
        self.port = free_port()
        self._script = script
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="gunicorn-"))
        self.log = self._dir / "server.log"
        # Run from an empty directory so a developer's .env never leaks into the tests.
        self._env = {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_THREADS": str(threads),
            "GUNICORN_ACCESS_LOG": "",
            # Below __exit__'s wait, so a stream left open never outlives the test's server.
            "GUNICORN_GRACEFUL_TIMEOUT": "10",
            "PYTHONPATH": str(REPO_ROOT),
            **env,
        }
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gunicorn:
        launcher = [str(Path(sys.executable).with_name("gunicorn"))]
        if not self._script:
            launcher = [sys.executable, "-m", "gunicorn"]
        command = [
            *launcher,
            "-c",
            str(REPO_ROOT / "gunicorn.conf.py"),
            "wsgi:app",
        ]
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                command, cwd=self._dir, env=self._env, stdout=log, stderr=log
            )
        wait_until_healthy(self.url + "/health", self._process, self.log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send the master a signal (SIGTERM: graceful stop; SIGHUP: reload)."""
        assert self._process is not None, "not started"
        self._process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the master to exit; its exit code (subprocess.TimeoutExpired if it does not)."""
        assert self._process is not None, "not started"
        return self._process.wait(timeout)

    def running(self) -> bool:
        """Whether the master is still running."""
        return self._process is not None and self._process.poll() is None

    def pids(self) -> list[int]:
        """The master's pid and its workers' (Linux /proc; none before start)."""
        if self._process is None:
            return []
        return [self._process.pid, *_children(self._process.pid)]

    def cpu_seconds(self) -> float:
        """CPU time used so far by the master and its workers (Linux /proc; 0.0 elsewhere)."""
        return sum(_process_cpu(pid) for pid in self.pids())

    def rss_kb(self) -> int:
        """Resident memory of the master and its workers together, in kB (Linux /proc)."""
        return sum(_rss_kb(pid) for pid in self.pids())


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _rss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, counted after the ")" that ends the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_nginx() -> str | None:
    """The nginx binary, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


class Nginx:
    """nginx in front of a backend, with the project's deploy/nginx.conf proxy settings."""

    def __init__(self, backend: str, binary: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._binary = binary
        self._backend = backend
        self._dir = Path(tempfile.mkdtemp(prefix="nginx-"))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Nginx:
        site = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("server anthropic-proxy:5000;", f"server {self._backend};")
        (self._dir / "site.conf").write_text(site)
        (self._dir / "nginx.conf").write_text(_nginx_main(self._dir))
        command = [
            self._binary,
            "-p",
            str(self._dir),
            "-c",
            str(self._dir / "nginx.conf"),
            "-g",
            "daemon off;",
        ]
        log = self._dir / "error.log"
        with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        wait_until_healthy(self.url + "/health", self._process, log)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _nginx_main(prefix: Path) -> str:
    temp = prefix / "tmp"
    temp.mkdir(exist_ok=True)
    return f"""
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/site.conf;
}}
"""


REDIS_SERVER = shutil.which("redis-server")
NO_REDIS = "redis-server is not installed"


class RedisServer:
    """A throwaway redis-server on a loopback port: no persistence, stopped on exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert REDIS_SERVER, NO_REDIS
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", self._dir]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
