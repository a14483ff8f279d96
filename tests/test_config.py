"""Settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from config import ConfigError, EndpointPreference, Settings


def test_defaults_match_the_migration_guide() -> None:
    s = Settings.from_env({})
    assert (s.autotext_model, s.autovision_model) == ("glm-4.6", "glm-4.6v")
    assert s.upstream_base == "https://api.z.ai/api/anthropic"
    assert s.openai_upstream_base == "https://api.z.ai/api/coding/paas/v4"
    assert s.text_endpoint_preference is EndpointPreference.AUTO
    assert (s.real_text_model_tokens, s.real_vision_model_tokens) == (200000, 65536)
    assert (s.anthropic_expected_tokens, s.openai_expected_tokens) == (200000, 200000)
    assert (s.tiktoken_cache_size, s.base_image_tokens, s.fixed_image_tokens) == (1000, 85, 1000)
    assert s.image_tokens_per_char == 0.25 and s.enable_dynamic_image_tokens
    assert s.enable_metrics is True


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REAL_TEXT_MODEL_TOKENS": "lots"}, "REAL_TEXT_MODEL_TOKENS"),
        ({"REAL_VISION_MODEL_TOKENS": "0"}, "REAL_VISION_MODEL_TOKENS"),
        ({"TEXT_ENDPOINT_PREFERENCE": "fastest"}, "TEXT_ENDPOINT_PREFERENCE"),
        ({"UPSTREAM_BASE": "api.z.ai"}, "UPSTREAM_BASE"),
        ({"ENABLE_DYNAMIC_IMAGE_TOKENS": "maybe"}, "ENABLE_DYNAMIC_IMAGE_TOKENS"),
        ({"REQUEST_TIMEOUT": "-1"}, "REQUEST_TIMEOUT"),
        ({"UPSTREAM_MAX_CONCURRENCY": "0"}, "UPSTREAM_MAX_CONCURRENCY"),
        ({"UPSTREAM_QUEUE_TIMEOUT": "soon"}, "UPSTREAM_QUEUE_TIMEOUT"),
        ({"MODEL_MAP": "claude-*"}, "MODEL_MAP"),
        ({"AUTOTEXT_MODEL": " "}, "AUTOTEXT_MODEL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"ENABLE_METRICS": "maybe"}, "ENABLE_METRICS"),
        ({"PROXY_API_KEYS": "a,b"}, "SERVER_API_KEY"),
    ],
)
def test_invalid_value_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_parsing_of_lists_maps_and_booleans() -> None:
    s = Settings.from_env(
        {
            "PROXY_API_KEYS": " a , b,,",
            "SERVER_API_KEY": "srv",
            "MODEL_MAP": "claude-haiku-*=glm-4.5-air, claude-opus-*=glm-4.6",
            "ENABLE_ACCURATE_TOKEN_COUNTING": "false",
            "TEXT_ENDPOINT_PREFERENCE": "OpenAI",
            "UPSTREAM_BASE": "http://localhost:9/api/anthropic/",
        }
    )
    assert s.proxy_api_keys == ("a", "b")
    assert s.model_map == (("claude-haiku-*", "glm-4.5-air"), ("claude-opus-*", "glm-4.6"))
    assert s.counting_is_legacy and s.text_endpoint_preference is EndpointPreference.OPENAI
    assert s.upstream_base == "http://localhost:9/api/anthropic"


def test_public_dict_hides_secrets() -> None:
    shown = Settings.from_env({"PROXY_API_KEYS": "pk", "SERVER_API_KEY": "sk-secret"}).public_dict()
    assert "sk-secret" not in repr(shown) and "pk" not in repr(shown.get("proxy_api_keys_set"))
    assert shown["server_api_key_set"] is True and "server_api_key" not in shown


def test_dotenv_is_read_only_when_asked(tmp_path, monkeypatch) -> None:
    (tmp_path / ".env").write_text("AUTOTEXT_MODEL=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOTEXT_MODEL", raising=False)
    assert Settings.from_env({}).autotext_model == "glm-4.6"
    assert Settings.from_env(dotenv=True).autotext_model == "from-dotenv"


def test_env_example_lists_every_variable_with_its_default() -> None:
    from dataclasses import fields

    from tests.conftest import REPO_ROOT

    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    listed = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    defaults = Settings.from_env({})
    for f in fields(Settings):
        name = f.metadata["env"]
        assert name in listed, f"{name} missing from .env.example"
        assert f.metadata["parse"](name, listed[name]) == getattr(defaults, f.name), name
