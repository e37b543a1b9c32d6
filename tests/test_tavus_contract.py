"""What a custom LLM receives from Tavus beyond perception: the configuration check request.

Source and how thin it is: tests/fixtures/tavus/lifecycle.json ("config_check").
"""

from __future__ import annotations

import json

import openai
import pytest

from server.completion.lifecycle import CONFIG_CHECK_ID, CONFIG_CHECK_REPLY
from tests.conftest import FIXTURES, make_settings
from tests.fake_upstream import FakeUpstream, text_reply
from tests.live import running_server

CHECK = json.loads((FIXTURES / "tavus" / "lifecycle.json").read_text())["config_check"]
MESSAGES = CHECK["body"]["messages"]


def ask(url: str, stream: bool) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    headers = CHECK["headers"]
    assert headers["conversation-id"] == CONFIG_CHECK_ID
    if not stream:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers=headers,  # type: ignore[arg-type]
        )
        return reply.choices[0].message.content or ""
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers=headers,  # type: ignore[arg-type]
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "non-streamed"])
def test_the_configuration_check_is_answered_without_calling_the_upstream(stream: bool) -> None:
    with (
        FakeUpstream().serving() as fake,
        running_server(make_settings(upstream_base_url=fake.base_url)) as url,
    ):
        fake.script = [text_reply("from", "the", "model")]
        assert ask(url, stream) == CONFIG_CHECK_REPLY
        assert fake.received == []


def test_the_configuration_check_can_go_to_the_model() -> None:
    with (
        FakeUpstream().serving() as fake,
        running_server(
            make_settings(upstream_base_url=fake.base_url, answer_config_check=False)
        ) as url,
    ):
        fake.script = [text_reply("from ", "the ", "model")]
        assert ask(url, stream=True) == "from the model"
        assert len(fake.received) == 1


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "You are Nova."}],
        [
            {"role": "system", "content": "You are Nova."},
            {"role": "assistant", "content": "Hi! Ready for your checkride?"},
        ],
    ],
    ids=["system text only", "greeting only"],
)
def test_before_the_user_speaks_the_model_gets_a_placeholder_user_turn(
    messages: list[dict[str, str]],
) -> None:
    """Tavus can call before the user has spoken (a public integration's logs); several
    providers reject a conversation without a user message."""
    from perception import parse_messages
    from prompts.render import NO_USER_TURN, render_prompt
    from prompts.templates import TemplateLibrary

    for template in ("default", "minimal"):
        rendered = render_prompt(
            parse_messages(messages), messages, TemplateLibrary().get(template)
        ).messages
        assert rendered[: len(messages)] == messages
        assert rendered[-1] == {"role": "user", "content": NO_USER_TURN}
    passthrough = render_prompt(
        parse_messages(messages), messages, TemplateLibrary().get("passthrough")
    )
    assert passthrough.messages == messages  # passthrough sends exactly what Tavus sent
