"""The `perception-llm` command, run as a real subprocess."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import FIXTURES, SAMPLES

SAMPLE = SAMPLES / "raven0-documented.json"


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_parse_file_prints_the_structured_json() -> None:
    result = cli("parse", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["mode"] == "raven"
    assert output["latest"]["emotions"] == "Neutral, attentive."
    assert len(output["messages"]) == 3


def test_parse_reads_stdin_and_bare_lists() -> None:
    messages = json.loads(SAMPLE.read_text())["messages"]
    result = cli("parse", "-", stdin=json.dumps(messages))
    assert result.returncode == 0
    assert (
        json.loads(result.stdout)["latest"]["screenshare"] == "A recipe website showing pancakes."
    )


def test_parse_pretty_summary() -> None:
    result = cli("parse", "--pretty", str(FIXTURES / "perception" / "raven-variants.json"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "mode: raven"
    assert "  emotions: Anxious, tapping the desk." in lines
    assert "  user_gaze: Looking at the second monitor." in lines
    assert "observations: 3" in lines
    assert "issue: [4] unclosed_tag: <user_emotions> has no closing tag" in lines
    assert "layout: system" in lines
    user_role = cli("parse", "--pretty", str(FIXTURES / "perception" / "user-role-jarvis.json"))
    assert "layout: user" in user_role.stdout.splitlines()
    assert "  rule from a user-role wrapper: respond in english" in user_role.stdout


def test_parse_errors_are_one_line_with_status_2(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{nope")
    no_messages = tmp_path / "none.json"
    no_messages.write_text('{"model": "x"}')
    for args in (
        ["parse", str(tmp_path / "missing.json")],
        ["parse", str(bad_json)],
        ["parse", str(no_messages)],
    ):
        result = cli(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("perception-llm: error:")
        assert "Traceback" not in result.stderr


def test_serve_refuses_public_host_without_key() -> None:
    result = cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "perception-llm: error: refusing to serve 0.0.0.0 without an API key: "
        "set PERCEPTION_LLM_API_KEY, or pass --insecure to serve it unauthenticated"
    )


def test_serve_rejects_bad_settings_in_one_line() -> None:
    result = cli("serve", env={"PERCEPTION_LLM_PORT": "not-a-port"})
    assert result.returncode == 2
    assert result.stderr.startswith("perception-llm: error: PERCEPTION_LLM_PORT: ")


def test_serve_starts_and_answers_the_sdk() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PERCEPTION_LLM_API_KEY": "k"},
    )
    try:
        assert process.stderr is not None
        port = None
        for line in process.stderr:  # uvicorn announces the bound port once it accepts
            match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "server did not announce its port"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "ping"}]
        )
        assert (
            reply.choices[0].message.content
            == 'You said: "ping" I have no perception of you in this request.'
        )
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)


def test_help_shows_examples() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "perception-llm serve" in result.stdout and "examples:" in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PERCEPTION_LLM_LOG_LEVEL", "verbose", "'debug', 'info'"),
        ("PERCEPTION_LLM_UPSTREAM_BASE_URL", "not-a-url", "valid URL"),
        ("PERCEPTION_LLM_UPSTREAM_HEADERS", "{bad", "must be JSON"),
        ("PERCEPTION_LLM_UPSTREAM_QUERY", "api-version=1", "must be JSON"),
        ("PERCEPTION_LLM_CORS_ORIGINS", "https://x", '["https://app.example"]'),
        ("PERCEPTION_LLM_EMOTION_VALUES", "happy,sad", '["neutral", "happy", "sad"]'),
        ("PERCEPTION_LLM_EMOTION_MAP", "[1]", "valid dictionary"),
        ("PERCEPTION_LLM_EMOTION_VALUES", '["<b>"]', "plain words"),
        ("PERCEPTION_LLM_PORT", "85636", "65535"),
        ("PERCEPTION_LLM_KEEPALIVE_SECONDS", "soon", "valid number"),
        ("PERCEPTION_LLM_API_KEY", "   ", "must not be empty"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    variable: str, value: str, says: str
) -> None:
    result = cli("parse", str(SAMPLE), env={variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and says in lines[0]
    assert "Traceback" not in result.stderr


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """`serve --port 0` with `env`; returns it and its stderr lines up to uvicorn's ready line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line.rstrip())
        if "Uvicorn running on" in line:
            break
    return process, lines


def test_serve_says_what_it_does_and_warns_about_misspelt_settings() -> None:
    process, lines = start_serve({"PERCEPTION_LLM_UPSTREAM_URL": "https://x.test/v1"})
    try:
        text = "\n".join(lines)
        assert (
            "PERCEPTION_LLM_UPSTREAM_URL is not a setting and is ignored; "
            "did you mean PERCEPTION_LLM_UPSTREAM_BASE_URL?" in text
        )
        summary = next(line for line in lines if line.startswith("perception-llm: serving "))
        assert "offline echo responder" in summary and "API key not required" in summary
        assert "default template default" in summary and "/playground" in summary
        assert f"as replica {socket.gethostname()}:pid" in summary  # port 0: named by its pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_on_a_busy_or_invalid_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = cli("serve", "--port", port)
    assert busy.returncode == 2
    assert busy.stderr.strip().splitlines() == [
        f"perception-llm: error: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another server? pass --port)"
    ]
    invalid = cli("serve", "--port", "85636")
    assert invalid.returncode == 2 and "--port must be 0-65535" in invalid.stderr


def test_serve_checks_the_upstream_once_and_says_when_it_refuses_the_key() -> None:
    from tests.fake_upstream import FakeUpstream, Reply

    with FakeUpstream().serving() as fake:
        fake.script = [Reply(status=401, error={"message": "bad key"})]
        process, _ = start_serve(
            {
                "PERCEPTION_LLM_UPSTREAM_BASE_URL": fake.base_url,
                "PERCEPTION_LLM_UPSTREAM_API_KEY": "sk-nope-1234",
            }
        )
        try:
            assert process.stderr is not None
            line = next(line for line in process.stderr if "upstream check" in line)
            assert "refused our key (HTTP 401)" in line and "sk-nope" not in line
            assert fake.received[0].path == "/v1/models"
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_each_command_declares_its_options_next_to_its_module() -> None:
    # Issue 24: cli.py declared every command's options; it now only builds the top level.
    from server.cli import COMMANDS

    commands = Path(__file__).resolve().parents[1] / "server" / "commands"
    assert "add_argument(" not in (commands.parent / "cli.py").read_text()
    for spec, _ in COMMANDS.values():
        module, function = spec.runs.split(":")
        assert spec.add_arguments.__module__ == f"{module}_options"
        assert callable(getattr(importlib.import_module(module), function))


HELP_AND_USAGE_ERRORS = [
    ["--help"],
    *([name, "--help"] for name in ("serve", "render", "simulate", "compare", "calls", "eval")),
    ["simulate"],  # --url is required
    ["parse", str(SAMPLE)],
]


@pytest.mark.parametrize("args", HELP_AND_USAGE_ERRORS, ids=" ".join)
def test_help_and_usage_errors_import_no_command_dependencies(args: list[str]) -> None:
    # A command's module imports its dependencies at the top (the openai SDK through the
    # emulator, SQLAlchemy, uvicorn, the app): with the options in it, `simulate --help` took
    # 1.5 s instead of 40 ms. Only running a command imports its module.
    code = (
        "import contextlib, io, sys\n"
        "from server.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),"
        " contextlib.suppress(SystemExit):\n"
        f"    main({args!r})\n"
        "heavy = ('openai', 'uvicorn', 'sqlalchemy', 'aiohttp', 'fastapi', 'emulator', 'evals')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # parse reads the settings, which reach fastapi through server.errors (as before issue 24).
    expected = "['fastapi']" if args[0] == "parse" else "[]"
    assert result.stdout.strip() == expected, result.stdout
