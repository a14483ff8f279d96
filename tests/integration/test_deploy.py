"""The deploy files and the commands the README and the migration guide give, run as written as
far as this machine allows (no Docker engine here: the compose file is validated by
docker-compose, and the image's commands are run without Docker)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import REPO_ROOT, free_port, wait_until_healthy

DOCKER_COMPOSE = shutil.which("docker-compose")
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
START_SCRIPT = REPO_ROOT / "deploy" / "compose-start.sh"
BIN = Path(sys.executable).parent


def run(command: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": f"{BIN}:{os.environ.get('PATH', '')}", **env}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60
    )


# ---------------------------------------------------------------------------- docker compose


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """The compose file beside the .env the README has users make (`cp .env.example .env`)."""
    shutil.copy(REPO_ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose is not installed")
@pytest.mark.parametrize(
    ("profile", "services"), [("", {"anthropic-proxy"}), ("redis", {"anthropic-proxy", "redis"})]
)
def test_the_compose_file_is_valid_with_and_without_the_redis_profile(
    compose_dir: Path, profile: str, services: set[str]
) -> None:
    flags = f"--profile {profile}" if profile else ""
    checked = run(f"docker-compose {flags} config", compose_dir)
    assert checked.returncode == 0, checked.stderr
    config = checked.stdout
    for name in services:
        assert re.search(rf"^  {name}:$", config, re.M), name
    proxy = config.split("\n  redis:")[0]
    assert "stop_grace_period: 5m30s" in proxy or "stop_grace_period: 330s" in proxy
    assert "healthcheck" in proxy and "COMPOSE_REDIS_URL: redis://redis:6379/0" in proxy
    assert "redis-cli" in config  # the redis service's healthcheck


def test_the_compose_healthcheck_is_the_images_own() -> None:
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    image_check = re.search(r'CMD (python -c "[^"]+")', DOCKERFILE)
    assert image_check is not None
    code = image_check.group(1).removeprefix('python -c "').removesuffix('"')
    assert code in compose


def test_the_commented_nginx_service_mounts_the_shipped_config() -> None:
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "#     - ./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in compose
    assert (REPO_ROOT / "deploy" / "nginx.conf").exists()


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    """`getent` that resolves only the names in RESOLVES; `gunicorn` that prints CACHE_URL."""
    for name, body in {
        "getent": 'case " $RESOLVES " in *" $2 "*) echo "10.0.0.2 $2"; exit 0;; esac; exit 2',
        "gunicorn": 'echo "gunicorn $* CACHE_URL=${CACHE_URL:-}"',
    }.items():
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


@pytest.mark.parametrize(
    ("resolves", "own", "cache_url"),
    [
        ("redis", "", "redis://redis:6379/0"),  # the redis profile is on
        ("", "", ""),  # it is off: the embedded store
        ("redis", "redis://elsewhere:6379/1", "redis://elsewhere:6379/1"),  # .env's own wins
    ],
)
def test_compose_start_uses_the_redis_service_when_its_profile_is_on(
    stubs: Path, resolves: str, own: str, cache_url: str
) -> None:
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "RESOLVES": resolves, "COMPOSE_REDIS_WAIT": "1",
           "COMPOSE_REDIS_URL": "redis://redis:6379/0", "CACHE_URL": own}  # fmt: skip
    started = subprocess.run(
        ["sh", str(START_SCRIPT)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=20,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert f"gunicorn -c gunicorn.conf.py wsgi:app CACHE_URL={cache_url}\n" in started.stdout


# ---------------------------------------------------------------------------- the image's commands


def image_command() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M)
    assert match is not None, "the Dockerfile has no exec-form CMD"
    command: list[str] = json.loads(match.group(1))
    return command


def image_files(into: Path) -> Path:
    """What `COPY . .` puts in the image's WORKDIR: the repository less .dockerignore's."""
    ignored = [p.strip() for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    workdir = into / "app"
    shutil.copytree(REPO_ROOT, workdir, ignore=shutil.ignore_patterns(*filter(None, ignored)))
    return workdir


@pytest.fixture
def image_server(fake: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    """The image's CMD, run in a copy of what the image holds, with the image's environment,
    on a free port instead of 5000."""
    workdir = image_files(tmp_path)
    assert not (workdir / "tests").exists() and (workdir / "vision").is_dir()
    port = free_port()
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
           "PORT": str(port), "HOST": "127.0.0.1", "GUNICORN_GRACEFUL_TIMEOUT": "5",
           **proxy_env(fake)}  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(image_command(), cwd=workdir, env=env, stdout=out, stderr=out)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://localhost:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_images_command_serves_and_its_healthcheck_passes(image_server: str) -> None:
    assert image_command() == ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    check = re.search(r'CMD (python -c "[^"]+")', DOCKERFILE)
    assert check is not None
    port = image_server.rsplit(":", 1)[1]
    ran = run(check.group(1).replace("127.0.0.1:5000", f"127.0.0.1:{port}"))
    assert ran.returncode == 0, ran.stderr


GUIDE = REPO_ROOT.parent / "shared" / "MIGRATION_GUIDE.md"
HEALTH = "curl http://localhost:5000/health"
MODELS = "curl http://localhost:5000/v1/models | jq '.data[0].id'"


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("jq") is None, reason="curl or jq is missing"
)
def test_the_documented_curl_commands(image_server: str) -> None:
    """The migration guide's validation commands as written, its port 5000 the test's."""
    documented = GUIDE.read_text() + (REPO_ROOT / "README.md").read_text()
    assert HEALTH in documented and MODELS in documented
    health = run(HEALTH.replace("http://localhost:5000", image_server))
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "ok"
    model = run(MODELS.replace("http://localhost:5000", image_server))
    assert model.returncode == 0, model.stderr
    assert model.stdout.strip() == '"glm-4.6"'
