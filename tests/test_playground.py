"""The playground in real headless Chromium (Debian's package, driven by Playwright) against a
live server on loopback. A screenshot is saved to test-artifacts/playground.png."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.conftest import make_settings
from tests.live import running_server

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# As the machine's probe found: without the background-networking flags Chromium keeps trying
# to reach hosts this sandbox cannot reach.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's Chromium, installed on first use when missing (the tests run as root)."""
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            capture_output=True,
            timeout=900,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        path = shutil.which("chromium")
    assert path, "chromium is not installed and could not be installed"
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server(make_settings()) as base:
        yield base


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(url + "/playground")
    return page, errors


def choose_example(page: Page, label: str) -> None:
    expect(page.locator("[data-testid=examples] option", has_text=label)).to_have_count(1)
    page.select_option("[data-testid=examples]", label=label)


def test_sample_perception_two_templates_and_a_streamed_reply(browser: Browser, url: str) -> None:
    page, errors = open_page(browser, url)
    choose_example(page, "raven0-documented")
    expect(page.get_by_test_id("latest")).to_contain_text("Neutral, attentive.")
    expect(page.get_by_test_id("mode")).to_have_text("raven")
    expect(page.get_by_test_id("tokens-a")).to_have_text(re.compile(r"^\d+ prompt tokens"))
    expect(page.get_by_test_id("tokens-b")).to_have_text(re.compile(r"^\d+ prompt tokens"))
    assert (
        page.get_by_test_id("tokens-a").inner_text() != page.get_by_test_id("tokens-b").inner_text()
    )
    expect(page.locator("[data-testid=messages-a] mark.fence")).to_contain_text(
        "What you can see and hear of the user right now"
    )
    page.get_by_test_id("send-a").click()
    expect(page.get_by_test_id("reply-a")).to_contain_text(
        'You said: "Sure, tell me one about the three little pigs."'
    )
    expect(page.get_by_test_id("timing-a")).to_contain_text("first token")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
    assert errors == []


def test_scenario_opens_the_composer_and_emotion_changes_stand_out(
    browser: Browser, url: str
) -> None:
    page, _ = open_page(browser, url)
    choose_example(page, "raven-cooking")
    expect(page.get_by_test_id("latest")).to_contain_text("Frustrated, frowning at the bowl.")
    changed = page.locator("[data-testid=timeline] td.changed")
    expect(changed.first).to_be_visible()
    assert "Focused." in changed.all_inner_texts()
    assert page.locator("#turns .turn").count() == 3


def test_composing_a_raven1_turn(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    page.get_by_role("tab", name="Compose").click()
    page.select_option("[data-testid=compose-mode]", "raven-1")
    turn = page.locator("#turns .turn").first
    turn.locator("[name=user]").fill("Great, another meeting.")
    turn.locator("[name=emotions]").fill("Annoyed.")
    turn.locator("[name=audio]").fill("Sarcastic, drawn-out tone.")
    page.get_by_test_id("use-compose").click()
    expect(page.get_by_test_id("latest")).to_contain_text("Sarcastic, drawn-out tone.")
    body = json.loads(page.get_by_test_id("request-json").text_content() or "{}")
    assert body["messages"][-1]["content"].startswith(
        "<user_audio_analysis>Sarcastic, drawn-out tone.</user_audio_analysis>"
    )


def test_a_request_loaded_while_the_page_starts_is_not_replaced_by_the_sample(
    browser: Browser, url: str
) -> None:
    """The page opens on a sample once its lists have loaded. A body pasted while they were in
    flight, and still being parsed, was replaced by that sample (seen once in a full run)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    held: dict[str, list[Route]] = {"examples": [], "parse": []}
    page.route("**/v1/playground/examples", lambda route: held["examples"].append(route))
    page.route("**/v1/perception/parse", lambda route: held["parse"].append(route))
    with page.expect_request("**/v1/playground/examples"):
        page.goto(url + "/playground")
    page.get_by_role("tab", name="Paste").click()
    pasted = {"messages": [{"role": "system", "content": "<user_emotions>Pasted.</user_emotions>"}]}
    page.get_by_test_id("paste").fill(json.dumps(pasted))
    with page.expect_request("**/v1/perception/parse"):
        page.get_by_test_id("use-paste").click()
    held["examples"].pop().continue_()  # the page's start goes on while the paste is parsed
    expect(page.locator("[data-testid=examples] option")).not_to_have_count(1)
    page.unroute("**/v1/perception/parse")
    for route in held["parse"]:
        route.continue_()
    expect(page.get_by_test_id("latest")).to_contain_text("Pasted.")
    assert json.loads(page.get_by_test_id("request-json").text_content() or "{}") == pasted


def test_perception_markup_is_shown_as_text_never_run(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    page.get_by_role("tab", name="Paste").click()
    hostile = '<img src=x onerror="window.pwned=1">'
    body: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": f"<user_screenshare>{hostile}</user_screenshare>"},
            {"role": "user", "content": "hi"},
        ]
    }
    page.get_by_test_id("paste").fill(json.dumps(body))
    page.get_by_test_id("use-paste").click()
    expect(page.get_by_test_id("latest")).to_contain_text("<img src=x")
    assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None


def test_bad_request_shows_the_servers_message(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    page.get_by_role("tab", name="Paste").click()
    page.get_by_test_id("paste").fill('{"messages": [{"role": "robot", "content": "x"}]}')
    page.get_by_test_id("use-paste").click()
    expect(page.get_by_test_id("error")).to_contain_text("400")
    expect(page.get_by_test_id("error")).to_contain_text("messages.[0].role")


def test_missing_key_is_explained_then_accepted(browser: Browser) -> None:
    with running_server(make_settings(api_key="play-key")) as base:
        page, _ = open_page(browser, base)
        expect(page.get_by_test_id("error")).to_contain_text("401")
        expect(page.get_by_test_id("error")).to_contain_text("enter the server's API key")
        page.get_by_test_id("api-key").fill("play-key")
        page.get_by_test_id("api-key").press("Enter")
        page.get_by_test_id("api-key").blur()
        expect(page.get_by_test_id("error")).to_be_hidden()
        choose_example(page, "raven1-audio")
        expect(page.get_by_test_id("latest")).to_contain_text("sarcastic")
        assert (
            page.evaluate("Object.keys(localStorage).length + document.cookie.length") == 0
        )  # memory only


def test_upstream_down_is_shown(browser: Browser) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings = make_settings(upstream_base_url=f"http://127.0.0.1:{port}/v1", fallback_text="")
    with running_server(settings) as base:
        page, _ = open_page(browser, base)
        choose_example(page, "raven0-documented")
        expect(page.get_by_test_id("tokens-a")).to_contain_text("prompt tokens")
        page.get_by_test_id("send-a").click()
        expect(page.get_by_test_id("error")).to_contain_text("502: cannot reach the upstream model")


def test_playground_can_be_turned_off() -> None:
    with running_server(make_settings(playground=False)) as base:
        assert httpx.get(base + "/playground").status_code == 404
        assert httpx.get(base + "/v1/playground/examples").status_code == 404


def test_entering_the_key_twice_does_not_double_the_send(browser: Browser) -> None:
    with running_server(make_settings(api_key="k2")) as base:
        page, _ = open_page(browser, base)
        for _ in range(2):  # each entry reloads the data; listeners must not pile up
            page.get_by_test_id("api-key").fill("k2")
            page.get_by_test_id("api-key").press("Enter")
            page.get_by_test_id("api-key").blur()
        choose_example(page, "raven0-documented")
        expect(page.get_by_test_id("tokens-a")).to_contain_text("prompt tokens")
        requests: list[str] = []
        page.on(
            "request",
            lambda request: (
                requests.append(request.url)
                if request.url.endswith("/v1/chat/completions")
                else None
            ),
        )
        page.get_by_test_id("send-a").click()
        expect(page.get_by_test_id("timing-a")).to_contain_text("total")
        assert len(requests) == 1


def test_first_load_shows_a_rendered_sample_and_send_waits_for_a_request(
    browser: Browser, url: str
) -> None:
    page, errors = open_page(browser, url)
    # Without choosing anything, the page shows a real request, perceived and rendered.
    expect(page.get_by_test_id("examples")).to_have_value(re.compile(r"^sample:"))
    expect(page.get_by_test_id("latest")).to_contain_text("Neutral, attentive.")
    expect(page.get_by_test_id("tokens-a")).to_have_text(re.compile(r"^\d+ prompt tokens"))
    expect(page.get_by_test_id("send-a")).to_be_enabled()
    expect(page.get_by_test_id("emotion-rule")).to_contain_text("No emotion-tag rule")
    # Bad pasted JSON: said in words, stale results cleared, Send disabled until a request.
    page.get_by_role("tab", name="Paste").click()
    page.get_by_test_id("paste").fill('{"messages": [')
    page.get_by_test_id("use-paste").click()
    expect(page.get_by_test_id("error")).to_contain_text("not valid JSON: it ends too early")
    expect(page.get_by_test_id("latest")).to_be_empty()
    expect(page.get_by_test_id("messages-a")).to_be_empty()
    expect(page.get_by_test_id("send-a")).to_be_disabled()
    expect(page.get_by_test_id("send-b")).to_be_disabled()
    assert errors == []


def test_the_emotion_rule_is_shown(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    choose_example(page, "phoenix4-emotions")
    expect(page.get_by_test_id("emotion-rule")).to_contain_text("Phoenix-4 emotion-tag rule")
    expect(page.get_by_test_id("emotion-rule")).to_contain_text("examples: content")
    page.get_by_test_id("send-a").click()
    expect(page.get_by_test_id("reply-a")).to_contain_text('<emotion value="')


def test_the_servers_address_opens_the_playground(url: str) -> None:
    response = httpx.get(url + "/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/playground"
    with running_server(make_settings(playground=False)) as base:
        assert httpx.get(base + "/").status_code == 404


def test_calls_view_updates_live_and_folds_abandoned_requests(
    browser: Browser, tmp_path: Path
) -> None:
    import openai

    settings = make_settings(
        capture=f"sqlite:///{tmp_path}/calls.db", echo_word_delay_ms=20, replica="replica-x"
    )
    with running_server(settings) as base:
        page, errors = open_page(browser, base)
        expect(page.get_by_test_id("conversations")).to_contain_text("conversation")
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        headers = {"conversation-id": "conv-live"}
        first_turn = [
            {"role": "system", "content": "<user_gaze>At the camera.</user_gaze>"},
            {"role": "user", "content": "Hello there"},
        ]
        # A speculative request, abandoned when the next one arrives (newest wins) ...
        abandoned = client.chat.completions.create(
            model="echo", messages=first_turn, stream=True, extra_headers=headers
        )
        next(iter(abandoned))
        final = [*first_turn[:1], {"role": "user", "content": "Hello there, how are you?"}]
        reply = client.chat.completions.create(
            model="echo", messages=final, stream=True, extra_headers=headers
        )
        assert "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
        with pytest.raises(openai.APIError):
            list(abandoned)
        # ... appears without a reload, and the timeline folds the abandoned one under it.
        expect(page.get_by_test_id("conversations")).to_contain_text("conv-live")
        page.locator("#conversations tr[data-id='conv-live']").click()
        timeline = page.get_by_test_id("call-timeline")
        expect(timeline).to_contain_text("Hello there, how are you?")
        expect(timeline.locator("tr.folded")).to_contain_text("1 abandoned before it")
        expect(timeline).to_contain_text("unknown tags: user_gaze")
        expect(timeline).to_contain_text("user_gaze: At the camera.")  # the perceived column
        expect(timeline).to_contain_text("replica-x")  # which replica served each call
        timeline.locator("tr[data-id]").first.click()
        detail = page.get_by_test_id("call-detail")
        expect(detail).to_contain_text("served by replica-x")
        expect(detail).to_contain_text("Messages the model got")
        expect(detail).to_contain_text("At the camera.")
        assert errors == []


def test_calls_view_says_when_the_server_does_not_record(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    expect(page.get_by_test_id("calls-status")).to_contain_text("not recording calls")


# What a newcomer met in the playground (issue 21).


def test_composed_and_scenario_requests_go_to_the_configured_model(browser: Browser) -> None:
    from tests.fake_upstream import FakeUpstream, text_reply

    with FakeUpstream().serving() as fake:
        fake.script = [text_reply("Answer from the configured model.")]
        settings = make_settings(upstream_base_url=fake.base_url, upstream_model="fake-model")
        with running_server(settings) as base:
            page, errors = open_page(browser, base)
            choose_example(page, "raven-cooking")  # a scenario: encoded by the server
            # The page opens on a rendered sample: wait for the scenario's own request.
            expect(page.locator("#request-json")).to_contain_text("My batter is way too runny.")
            expect(page.get_by_test_id("tokens-a")).to_contain_text("prompt tokens")
            assert (
                json.loads(page.locator("#request-json").text_content() or "")["model"]
                == "fake-model"
            )
            page.get_by_test_id("send-a").click()
            expect(page.get_by_test_id("reply-a")).to_have_text("Answer from the configured model.")
            expect(page.get_by_test_id("timing-a")).to_contain_text("fake-model · first token")
            page.get_by_role("tab", name="Paste").click()  # a bare messages list
            page.get_by_test_id("paste").fill('[{"role": "user", "content": "Hi"}]')
            page.get_by_test_id("use-paste").click()
            expect(page.locator("#request-json")).not_to_contain_text("My batter is way too runny.")
            expect(page.get_by_test_id("send-a")).to_be_enabled()
            assert (
                json.loads(page.locator("#request-json").text_content() or "")["model"]
                == "fake-model"
            )
    assert errors == []


def test_a_refused_request_cannot_be_sent(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    expect(page.get_by_test_id("send-a")).to_be_enabled()  # the first sample
    page.get_by_role("tab", name="Paste").click()
    page.get_by_test_id("paste").fill("[]")
    page.get_by_test_id("use-paste").click()
    expect(page.get_by_test_id("error")).to_contain_text("400")
    expect(page.get_by_test_id("send-a")).to_be_disabled()
    expect(page.get_by_test_id("send-b")).to_be_disabled()


def test_a_failed_send_does_not_stay_streaming(browser: Browser) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings = make_settings(upstream_base_url=f"http://127.0.0.1:{port}/v1", fallback_text="")
    with running_server(settings) as base:
        page, _ = open_page(browser, base)
        expect(page.get_by_test_id("send-a")).to_be_enabled()
        page.get_by_test_id("send-a").click()
        expect(page.get_by_test_id("error")).to_contain_text("502")
        expect(page.get_by_test_id("timing-a")).to_have_text("failed (see the message above)")


@pytest.mark.parametrize(
    "pasted",
    [
        '{"messages": [',
        '{"messages": [{"role": "user", "content": "Hi',
        '[{"role": "user"}',
        '{"a": "b\\"',
    ],
)
def test_truncated_json_is_said_in_words(browser: Browser, url: str, pasted: str) -> None:
    page, _ = open_page(browser, url)
    page.get_by_role("tab", name="Paste").click()
    page.get_by_test_id("paste").fill(pasted)
    page.get_by_test_id("use-paste").click()
    expect(page.get_by_test_id("error")).to_have_text(
        "the pasted text is not valid JSON: it ends too early "
        "(a missing closing bracket, brace or quote?)"
    )


def test_a_fallback_reply_is_marked_as_one(browser: Browser) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with running_server(make_settings(upstream_base_url=f"http://127.0.0.1:{port}/v1")) as base:
        page, _ = open_page(browser, base)
        expect(page.get_by_test_id("send-a")).to_be_enabled()
        page.get_by_test_id("send-a").click()
        expect(page.get_by_test_id("reply-a")).to_contain_text("Sorry, I lost my train of thought")
        expect(page.get_by_test_id("timing-a")).to_contain_text(
            "fallback: upstream unreachable — the server's fallback line, not a model's reply"
        )


def test_switching_a_template_clears_its_reply(browser: Browser, url: str) -> None:
    page, _ = open_page(browser, url)
    expect(page.get_by_test_id("send-a")).to_be_enabled()
    page.get_by_test_id("send-a").click()
    expect(page.get_by_test_id("reply-a")).to_contain_text("You said:")
    expect(page.get_by_test_id("timing-a")).to_contain_text("first token")
    page.select_option("[data-testid=template-a]", "minimal")
    expect(page.get_by_test_id("reply-a")).to_be_empty()
    expect(page.get_by_test_id("timing-a")).to_be_empty()
    expect(page.get_by_test_id("tokens-a")).to_have_text(re.compile(r"^\d+ prompt tokens"))


def test_user_role_perception_is_shown_in_the_playground_and_calls_view(
    browser: Browser, tmp_path: Path
) -> None:
    """Issue 22: perception sent as user-role messages is perceived, shown with its layout, and
    the Calls view shows what the call perceived and where Tavus put it."""
    import openai

    from scenarios import load_scenario, scenario_request

    settings = make_settings(capture=f"sqlite:///{tmp_path}/calls.db")
    with running_server(settings) as base:
        page, errors = open_page(browser, base)
        choose_example(page, "raven1-user-role")
        expect(page.get_by_test_id("latest")).to_contain_text("Brighter, faster than before.")
        expect(page.get_by_test_id("layout")).to_contain_text("in user-role messages")
        expect(page.get_by_test_id("layout")).to_contain_text("respond in english")

        body = scenario_request(load_scenario("raven1-user-role"))
        client = openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="echo",
            messages=body["messages"],
            stream=True,
            extra_headers={"conversation-id": "conv-user-role"},
        )
        spoken = "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
        assert "Curious, leaning in" in spoken  # echo reads user-role perception too
        assert "Brighter, faster than before." in spoken
        expect(page.get_by_test_id("conversations")).to_contain_text("conv-user-role")
        page.locator("#conversations tr[data-id='conv-user-role']").click()
        timeline = page.get_by_test_id("call-timeline")
        expect(timeline).to_contain_text("Can you quiz me on cell organelles?")
        expect(timeline).to_contain_text("audio: Brighter, faster than before.")
        timeline.locator("tr[data-id]").first.click()
        detail = page.get_by_test_id("call-detail")
        expect(detail).to_contain_text("Perception layout: in user-role messages")
        expect(detail).to_contain_text("A diagram of an animal cell with labels.")
        assert errors == []
