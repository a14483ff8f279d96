"""The application factory: test settings vs the environment, nothing done at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app import create_app
from config import ConfigError, Settings
from tests.conftest import REPO_ROOT


def test_factory_uses_given_settings(settings: Settings) -> None:
    app = create_app(settings)
    assert app.extensions["anthropic_proxy"].settings is settings


def test_factory_reads_the_environment_without_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOTEXT_MODEL", "glm-from-env")
    app = create_app()
    assert app.extensions["anthropic_proxy"].settings.autotext_model == "glm-from-env"


def test_invalid_environment_stops_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REAL_TEXT_MODEL_TOKENS", "plenty")
    with pytest.raises(ConfigError, match="REAL_TEXT_MODEL_TOKENS"):
        create_app()


def test_importing_modules_does_no_work() -> None:
    # No env reads, tokenizer loads or sockets at import: importing is free of side effects.
    code = (
        "import socket, os\n"
        "def refuse(*a, **k): raise AssertionError('network at import')\n"
        "socket.socket.connect = refuse\n"
        "import app, config, metrics, api.completions, api.health, api.metrics, api.models\n"
        "import upstream.client, tokens, context.scaling\n"
        "import tiktoken.registry as r\n"
        "from tokens.encoding import _build_offline\n"
        "assert not r.ENCODINGS, 'an encoding was loaded at import'\n"
        "assert not _build_offline.cache_info().currsize, 'an encoding was built at import'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_health_shows_routing_but_no_secrets(settings_env: dict[str, str]) -> None:
    settings_env.update({"PROXY_API_KEYS": "proxy-secret", "SERVER_API_KEY": "server-secret"})
    client = create_app(Settings.from_env(settings_env)).test_client()
    reply = client.get("/health")
    body = reply.get_json()
    assert reply.status_code == 200 and body["status"] == "ok" and body["uptime_seconds"] >= 0
    assert body["routing"]["text_endpoint_preference"] == "auto"
    assert body["auth"] == {"proxy_keys": True, "server_key": True}
    assert b"secret" not in reply.data
    assert body["upstream_gate"] == {"limit": None}


def test_health_shows_the_upstream_gate(settings_env: dict[str, str]) -> None:
    settings_env.update({"UPSTREAM_MAX_CONCURRENCY": "3", "UPSTREAM_QUEUE_TIMEOUT": "20"})
    body = create_app(Settings.from_env(settings_env)).test_client().get("/health").get_json()
    assert body["upstream_gate"] == {
        "limit": 3,
        "queue_timeout": 20,
        "held_by_this_worker": 0,
        "waiting_in_this_worker": 0,
    }


def test_models_list_and_lookup(client) -> None:
    listed = client.get("/v1/models").get_json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [
        "glm-4.6",
        "glm-4.6v",
        "glm-4.6-openai",
        "glm-4.6-anthropic",
    ]
    assert client.get("/v1/models/glm-4.6-openai").get_json()["id"] == "glm-4.6-openai"
    missing = client.get("/v1/models/gpt-4o")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "model_not_found"


def test_unknown_route_and_method_are_json(client) -> None:
    assert client.get("/nope").get_json()["error"]["type"] == "not_found_error"
    wrong = client.get("/v1/messages")
    assert wrong.status_code == 405 and wrong.get_json()["type"] == "error"
