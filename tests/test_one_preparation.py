"""One preparation (issue 24): every caller picks the same template and sends the same messages.

The completion route (over real sockets, the official SDK as client, a loopback upstream that
records what the model got), `POST /v1/prompts/render` and the CLI's `render` run the same table
of cases; before issue 24 each had its own copy of the preparation, with its own precedence
and its own refusals (the render route rendered `n: 2` and 200 tools that the completion route
refuses; the CLI let a non-string or empty `prompt` fall back to the default and validated
nothing). `compare` and `eval` reach the preparation through those two routes: a test checks
compare's render request carries what its completion request carries.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from emulator.compare import play
from emulator.simulate import SimulateOptions
from evals.cache import without_nonce
from prompts.fence import new_fence
from prompts.templates import TemplateLibrary
from prompts.tokens import estimate_message_tokens
from scenarios.model import load_scenario
from server.cli import main as cli_main
from server.completion.preparation import TemplateChoice, prepare
from server.errors import InvalidRequestError
from server.inprocess import live_server
from tests.conftest import load_sample, make_settings
from tests.fake_upstream import FakeUpstream, text_reply

RAVEN = load_sample("raven0-documented")
# The configured default, and a split that puts every conversation id in the `passthrough` arm:
# each source of a name gives a different template, so the messages tell which one won.
SETTINGS = {"prompt": "default", "prompt_split": "passthrough=1", "max_tools": 4}


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any] = field(default_factory=dict)  # merged into the sample body
    header: str | None = None  # X-Prompt-Template
    query: str | None = None  # ?prompt=
    conversation_id: str | None = None
    template: str | None = None  # the one it must pick, or
    error: str | None = None  # the start of the 400's message

    @property
    def from_a_file(self) -> bool:
        """The CLI reads a body from a file: no headers, query or conversation id."""
        return self.header is None and self.query is None and self.conversation_id is None


CASES = [
    Case("nothing named: the setting", template="default"),
    Case("a conversation id: its split arm", conversation_id="conv-1", template="passthrough"),
    Case("query beats the split", query="minimal", conversation_id="conv-1", template="minimal"),
    Case("header beats the query", header="minimal", query="passthrough", template="minimal"),
    Case("header beats the split", header="default", conversation_id="c", template="default"),
    Case("body beats the header", body={"prompt": "minimal"}, header="passthrough",
         template="minimal"),
    Case("body beats everything", body={"prompt": "default"}, header="minimal",
         query="minimal", conversation_id="conv-1", template="default"),
    Case("body alone", body={"prompt": "passthrough"}, template="passthrough"),
    Case("an empty header names nothing", header="", query="minimal", template="minimal"),
    Case("an empty query names nothing", query="", conversation_id="c", template="passthrough"),
    Case("a non-string prompt", body={"prompt": 7}, error="`prompt` must be a template name"),
    Case("a null prompt", body={"prompt": None}, error="`prompt` must be a template name"),
    Case("an empty body prompt is a name", body={"prompt": ""}, error="unknown prompt template"),
    Case("an unknown body prompt", body={"prompt": "nope"}, error="unknown prompt template"),
    Case("an unknown header", header="nope", error="unknown prompt template"),
    Case("n above 1", body={"n": 2}, error="Only n=1 is supported."),
    Case("too many tools", body={"tools": [{"type": "function"}] * 5}, error="5 tools is more"),
    Case("an invalid role", body={"messages": [{"role": "robot", "content": "hi"}]},
         error="Invalid request: messages.[0].role"),
]  # fmt: skip


def body_of(case: Case) -> dict[str, Any]:
    return {**RAVEN, "model": "m", **case.body}


@dataclass
class Outcome:
    template: str | None  # None where the caller does not say (the completion route)
    messages: str | None  # canonical JSON, nonces replaced
    error: str | None


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeUpstream]]:
    with FakeUpstream().serving() as fake:
        fake.script = [text_reply("ok")]
        settings = make_settings(upstream_base_url=fake.base_url, fallback_text="", **SETTINGS)
        with live_server(settings) as server:
            yield server.url, fake


def http_headers(case: Case) -> dict[str, str]:
    headers = {"X-Prompt-Template": case.header} if case.header is not None else {}
    if case.conversation_id is not None:
        headers["conversation-id"] = case.conversation_id
    return headers


def use_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table's settings for the CLI, which reads them from the environment."""
    for name, value in SETTINGS.items():
        monkeypatch.setenv(f"PERCEPTION_LLM_{name.upper()}", str(value))


def completion(url: str, fake: FakeUpstream, case: Case) -> Outcome:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    headers = http_headers(case)
    body = body_of(case)
    before = len(fake.received)
    try:
        with client.chat.completions.create(
            model=body.pop("model"),
            messages=body.pop("messages"),
            stream=True,
            extra_body=body,
            extra_headers=headers,
            extra_query={"prompt": case.query} if case.query is not None else None,
        ) as stream:
            for _ in stream:
                pass
    except openai.BadRequestError as error:
        assert len(fake.received) == before, "a refused request reached the model"
        assert isinstance(error.body, dict)  # the SDK hands over the body's `error` object
        return Outcome(None, None, error.body["message"])
    sent = fake.wait_for_requests(before + 1).body
    assert "prompt" not in sent, "the template field is ours: never forwarded"
    return Outcome(None, without_nonce(sent["messages"]), None)


def render_route(url: str, case: Case) -> Outcome:
    headers = http_headers(case)
    response = httpx.post(
        url + "/v1/prompts/render",
        json=body_of(case),
        headers=headers,
        params={"prompt": case.query} if case.query is not None else None,
    )
    data = response.json()
    if response.status_code != 200:
        assert response.status_code == 400, data
        return Outcome(None, None, data["error"]["message"])
    return Outcome(data["prompt"], without_nonce(data["messages"]), None)


def cli_render(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    use_settings(monkeypatch)
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body_of(case)))
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    status = cli_main(["render", str(path)])
    if status != 0:
        assert status == 2, err.getvalue()
        return Outcome(None, None, err.getvalue().strip().removeprefix("perception-llm: error: "))
    data = json.loads(out.getvalue())
    return Outcome(data["prompt"], without_nonce(data["messages"]), None)


def expected_messages(template: str) -> str:
    """What the model gets with `template`, by the one preparation itself."""
    settings = make_settings(**SETTINGS)
    library = TemplateLibrary(settings.prompts_dir)
    prepared = prepare(body_of(Case("")), TemplateChoice(), settings, library)
    rendered = prepare(
        {**body_of(Case("")), "prompt": template}, TemplateChoice(), settings, library
    ).rendered
    assert prepared.rendered.template == "default"
    return without_nonce(rendered.messages)


def test_the_templates_of_the_table_send_different_messages() -> None:
    """Otherwise equal messages would not show that the callers picked the same template."""
    assert len({expected_messages(t) for t in ("default", "minimal", "passthrough")}) == 3


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_caller_prepares_alike(
    case: Case,
    served: tuple[str, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, fake = served
    outcomes = {
        "completion route": completion(url, fake, case),
        "render route": render_route(url, case),
    }
    if case.from_a_file:
        outcomes["cli render"] = cli_render(case, tmp_path, monkeypatch)
    for caller, outcome in outcomes.items():
        if case.error is not None:
            assert outcome.error is not None, caller
            assert outcome.error.startswith(case.error), (caller, outcome.error)
            continue
        assert outcome.error is None, (caller, outcome.error)
        assert case.template is not None
        assert outcome.template in (None, case.template), caller
        assert outcome.messages == expected_messages(case.template), caller
    errors = {outcome.error for outcome in outcomes.values()}
    assert len(errors) == 1, f"the callers refuse with different messages: {errors}"


def test_render_prompt_flag_is_the_body_field(
    served: tuple[str, FakeUpstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`render --prompt NAME` renders what a body with `prompt: NAME` gets, over the file's own
    `prompt` (as `compare` sets the field per template)."""
    use_settings(monkeypatch)
    path = tmp_path / "body.json"
    path.write_text(json.dumps({**RAVEN, "prompt": "passthrough"}))
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert cli_main(["render", str(path), "--prompt", "minimal"]) == 0
    data = json.loads(out.getvalue())
    assert data["prompt"] == "minimal"
    assert without_nonce(data["messages"]) == expected_messages("minimal")


def test_prepare_is_pure() -> None:
    """Same inputs, same output: plain values in (no Request, no Services), nothing kept."""
    settings = make_settings(**SETTINGS)
    library = TemplateLibrary(settings.prompts_dir)
    choice = TemplateChoice(header="minimal", conversation_id="conv-1")
    raw = json.dumps(RAVEN).encode()
    fence = new_fence("0123456789abcdef")
    first = prepare(raw, choice, settings, library, fence=fence)
    second = prepare(raw, choice, settings, library, fence=fence)
    assert first == second
    assert first.rendered.template == "minimal"
    assert json.loads(raw) == RAVEN  # the input is not changed
    assert prepare(json.loads(raw), choice, settings, library, fence=fence) == first


def test_template_choice_from_http_reads_the_three_places() -> None:
    choice = TemplateChoice.from_http(
        {"x-prompt-template": "minimal", "x-conversation-id": "c-9"}, {"prompt": "default"}
    )
    assert choice == TemplateChoice(header="minimal", query="default", conversation_id="c-9")
    assert TemplateChoice.from_http({}, {}) == TemplateChoice()


def test_unknown_template_is_a_400_naming_the_choices() -> None:
    settings = make_settings(**SETTINGS)
    library = TemplateLibrary(settings.prompts_dir)
    with pytest.raises(InvalidRequestError) as raised:
        prepare(RAVEN, TemplateChoice(query="nope"), settings, library)
    assert raised.value.param == "prompt" and raised.value.code == "unknown_prompt"
    assert "minimal" in raised.value.message


def test_compare_asks_the_render_route_what_its_completion_carried(tmp_path: Path) -> None:
    """compare's token count is the count of what the model got, also when its options send
    the endpoint's key as a header (its render request carried only the body: a 401, no
    count)."""
    with FakeUpstream().serving() as fake:
        fake.script = [text_reply("ok")]
        settings = make_settings(upstream_base_url=fake.base_url, fallback_text="", api_key="k")
        with live_server(settings) as server:
            options = SimulateOptions(
                url=server.url + "/v1",
                headers={"Authorization": "Bearer k", "X-Prompt-Template": "passthrough"},
                query={"prompt": "passthrough"},
                model="m",
                quiet=True,
            )
            scenario = load_scenario("raven-cooking")
            cells = asyncio.run(play(scenario, "minimal", options, io.StringIO()))
    assert cells and all(cell.error is None for cell in cells)
    sent = [received.body["messages"] for received in fake.received]
    assert [cell.prompt_tokens for cell in cells] == [estimate_message_tokens(m) for m in sent]
