"""count_tokens for three sample requests, next to what the fake upstream reports and GLM truth.

The proxy's /v1/messages/count_tokens (default counter) is compared with the input_tokens the
fake z.ai reports for the same request sent through /v1/messages (GLM-4.6's tokenizer over the
rendered chat template, or cl100k without the tokenizer files), and with the exact count from
GLM-4.6's tokenizer file when it is beside the repo.

    .venv/bin/python benchmarks/compare_count_tokens.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from app import create_app  # noqa: E402
from config import Settings  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tokens import build_counter  # noqa: E402
from upstream import anthropic_format  # noqa: E402

GLM_FILE = REPO_ROOT.parent / "shared" / "tokenizers" / "glm-4.6.tiktoken"
TOOL = {
    "name": "read_file",
    "description": "Read a file from the workspace",
    "input_schema": {
        "type": "object",
        "properties": {"path": {"type": "string"}},
        "required": ["path"],
    },
}
SAMPLES = {
    "short chat": {
        "system": "You are a helpful assistant.",
        "messages": [
            {"role": "user", "content": "What is the capital of Norway, and why is it there?"}
        ],
    },
    "tool loop": {
        "system": "You are a coding agent. Use tools to inspect files.",
        "tools": [TOOL],
        "messages": [
            {"role": "user", "content": "Show me what main.py does."},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "read_file",
                        "input": {"path": "main.py"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "def main():\n    print('hello')\n\n"
                        "if __name__ == '__main__':\n    main()\n",
                    }
                ],
            },
        ],
    },
    "chinese + code": {
        "messages": [
            {
                "role": "user",
                "content": "请解释下面这段代码的作用，并指出可能的错误：\n"
                "for i in range(10):\n    total += i * 2\nprint(total)",
            }
        ]
    },
}


def main() -> None:
    truth = (
        build_counter(Settings.from_env({"TOKENIZER_FILE": str(GLM_FILE)}))
        if GLM_FILE.exists()
        else None
    )
    with FakeUpstream() as fake:
        env = {
            "UPSTREAM_BASE": fake.anthropic_base,
            "OPENAI_UPSTREAM_BASE": fake.openai_base,
            "LOG_LEVEL": "WARNING",
        }
        client = create_app(Settings.from_env(env)).test_client()
        headers = {"x-api-key": "sk-sample"}
        print(f"{'request':<16} {'count_tokens':>12} {'fake upstream':>14} {'GLM-4.6 exact':>14}")
        for name, sample in SAMPLES.items():
            body = {"model": "glm-4.6", **sample}
            counted = client.post(
                "/v1/messages/count_tokens", json=body, headers=headers
            ).get_json()
            reply = client.post(
                "/v1/messages", json=body | {"max_tokens": 64}, headers=headers
            ).get_json()
            exact = (
                truth.count_request(anthropic_format.parse_request(body | {"max_tokens": 64}))
                if truth
                else None
            )
            print(
                f"{name:<16} {counted['input_tokens']:>12} {reply['usage']['input_tokens']:>14}"
                f" {exact if exact is not None else 'n/a':>14}"
            )


if __name__ == "__main__":
    main()
