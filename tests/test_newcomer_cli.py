"""What a newcomer met on the command line (issue 21), each as the real command in a subprocess:
a missing test-only library, a capture file `calls` could not find, a template name refused only
per turn, a model line that hid an unreachable endpoint, tracebacks on `| head` and Ctrl-C, `#1`
refused, tools recording their own calls, and `--help` without examples."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from server.capture.store import CaptureStore
from server.cli import COMMANDS, command
from server.inprocess import live_server, running_server
from tests.conftest import make_settings
from tests.test_capture import MESSAGES, written

# `httpx` comes only with the test extra: the README's install has `httpx2` (the openai SDK's).
WITHOUT_HTTPX = "import sys; sys.modules['httpx'] = None; from server.cli import main; "


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, blocked: str = ""
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPTION_LLM_")}
    code = f"{blocked or 'from server.cli import main; '}import sys; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})},
    )


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server(make_settings()) as url:
        yield url + "/v1"


def free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # closed: nothing listens


def test_simulate_and_compare_run_without_httpx(server_url: str) -> None:
    simulate = cli(
        "simulate", "--url", server_url, "--scenario", "basic-story", blocked=WITHOUT_HTTPX
    )
    assert simulate.returncode == 0, simulate.stderr
    assert "ModuleNotFoundError" not in simulate.stderr
    compare = cli("compare", "basic-story", "--prompts", "minimal", blocked=WITHOUT_HTTPX)
    assert compare.returncode == 0, compare.stderr


def test_calls_finds_the_file_serve_capture_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/perception-llm-calls.db"  # what `serve --capture` writes there
    with live_server(make_settings(capture=url)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        list(
            client.chat.completions.create(
                model="echo",
                messages=MESSAGES,
                stream=True,
                extra_headers={"conversation-id": "conv-here"},
            )
        )
        written(server, 1)
    listed = cli("calls", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "conv-here" in listed.stdout
    calls = cli("calls", "list", "conv-here", cwd=tmp_path)
    call_id = calls.stdout.split()[0]
    assert call_id.startswith("#")
    shown = cli("calls", "show", call_id, cwd=tmp_path)  # as `calls list` prints it
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["conversation_id"] == "conv-here"


def test_eval_from_capture_finds_the_file_serve_capture_writes(tmp_path: Path) -> None:
    # Issue 31: after `serve --capture`, `eval --from-capture 5` in the same folder said "no
    # captured conversation to replay in sqlite:///perception-llm-evals.db".
    url = f"sqlite:///{tmp_path}/perception-llm-calls.db"  # what `serve --capture` writes there
    with live_server(make_settings(capture=url)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(
            model="echo", messages=MESSAGES, extra_headers={"conversation-id": "conv-here"}
        )
        written(server, 1)
    result = cli("eval", "--from-capture", "5", cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr  # it ran (echo's verdicts are not at issue)
    assert "suite captured: 1 test(s) x 2 template(s)" in result.stdout
    assert "kept in sqlite:///perception-llm-calls.db" in result.stdout
    assert not (tmp_path / "perception-llm-evals.db").exists()


def test_calls_without_any_database_names_the_ways_to_give_one(tmp_path: Path) -> None:
    result = cli("calls", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "perception-llm-calls.db" in result.stderr and "--db" in result.stderr


@pytest.mark.parametrize("target", ["x1", "#", "１"])
def test_calls_show_refuses_what_is_not_an_id(tmp_path: Path, target: str) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    CaptureStore(url).upgrade()
    result = cli("calls", "show", target, "--db", url)
    assert result.returncode == 2 and "show takes a call id" in result.stderr


def test_compare_refuses_an_unknown_template_of_the_endpoint_before_it_starts(
    server_url: str,
) -> None:
    result = cli("compare", "raven-cooking", "--prompts", "default,fancy", "--url", server_url)
    assert result.returncode == 2, result.stdout
    assert "unknown prompt template 'fancy'" in result.stderr
    assert "default, minimal, passthrough" in result.stderr
    assert "turn 1" not in result.stdout  # refused before the first turn


def test_compare_that_fails_turns_exits_1(tmp_path: Path) -> None:
    # An upstream that is not there and no fallback line: every turn is an error.
    result = cli(
        "compare",
        "basic-story",
        "--prompts",
        "minimal",
        "--model",
        "gpt-x",
        env={
            "PERCEPTION_LLM_UPSTREAM_BASE_URL": free_port_url(),
            "PERCEPTION_LLM_UPSTREAM_CHECK": "false",
            "PERCEPTION_LLM_FALLBACK_TEXT": "",
        },
    )
    assert result.returncode == 1, result.stderr
    assert "turns failed" in result.stderr


def test_simulate_against_nothing_says_so_not_a_model_name() -> None:
    result = cli("simulate", "--url", free_port_url())
    assert result.returncode == 2
    assert "cannot reach" in result.stderr
    assert "model: echo" not in result.stdout + result.stderr


def test_simulate_with_a_refused_key_says_so_not_a_model_name() -> None:
    with running_server(make_settings(api_key="right")) as url:
        result = cli("simulate", "--url", url + "/v1", "--api-key", "wrong")
    assert result.returncode == 2
    assert "refused the API key" in result.stderr
    assert "model: echo" not in result.stdout + result.stderr


def test_compare_in_process_does_not_record_its_own_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    CaptureStore(url).upgrade()
    result = cli(
        "compare", "basic-story", "--prompts", "minimal", env={"PERCEPTION_LLM_CAPTURE": url}
    )
    assert result.returncode == 0, result.stderr
    store = CaptureStore(url)
    try:
        assert store.conversations(10) == []
    finally:
        store.dispose()


def big_request(tmp_path: Path) -> Path:
    path = tmp_path / "big.json"
    turns = [
        {"role": "system", "content": f"<user_emotions>calm {i}</user_emotions>"}
        if i % 2
        else {"role": "user", "content": f"hi {i}"}
        for i in range(4000)
    ]
    path.write_text(json.dumps(turns))
    return path


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "parse", str(big_request(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_ctrl_c_ends_quietly() -> None:
    # A simulate against an endpoint that accepts the connection and never answers: it waits
    # until interrupted. The listening socket accepts on its own (the kernel's backlog).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "simulate", "--url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().startswith("scenario")  # it is running
        connection, _ = listener.accept()  # its first request is here, and never answered
        with connection:
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_has_runnable_examples(name: str) -> None:
    result = cli(name, "--help")
    assert result.returncode == 0
    assert "examples:\n  perception-llm " + name in result.stdout
    assert command(name).examples in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["simulate"],
        ["compare", "raven-cooking"],
        ["parse"],
        ["serve", "--port", "eighty"],
        ["calls", "frobnicate"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_are_one_line_and_status_2(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "error:" in result.stderr and "--help" in result.stderr


@pytest.mark.parametrize("command", [None, *sorted(COMMANDS)])
def test_help_text_is_what_it_means_and_its_serve_examples_start(command: str | None) -> None:
    # Issue 31: the descriptions of `calls` and `eval` printed "95%%" (argparse does not format
    # a description), and the public-host example's key "secret" is one `serve` refuses (a key
    # on a public interface needs 16 characters).
    result = cli(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "%%" not in result.stdout
    for key in re.findall(r"PERCEPTION_LLM_API_KEY=(\S+)", result.stdout):
        assert len(key) >= 16, key


@pytest.mark.parametrize(
    "args",
    [
        ["serve"],
        ["parse", "-"],
        ["render", "-"],
        ["simulate", "--url", "http://127.0.0.1:9/v1"],
        ["compare", "raven-cooking", "--prompts", "default"],
        ["calls", "list"],
        ["eval", "perception-basics"],
    ],
)
def test_an_unknown_option_points_at_the_commands_own_help(args: list[str]) -> None:
    # Issue 31: it pointed at `perception-llm --help`, which does not list a command's options.
    assert args[0] in COMMANDS
    result = cli(*args, "--no-such-option")
    assert result.returncode == 2
    assert result.stderr == (
        f"perception-llm {args[0]}: error: unrecognized arguments: --no-such-option "
        f"(see perception-llm {args[0]} --help)\n"
    )


@pytest.mark.parametrize("url", ["localhost:8000", "http://127.0.0.1:abc/v1", "http://[::1"])
@pytest.mark.parametrize(
    "command",
    [
        ["simulate"],
        ["compare", "raven-cooking", "--prompts", "default"],
        ["eval", "perception-basics"],
    ],
)
def test_a_url_that_is_not_one_is_one_line(command: list[str], url: str, tmp_path: Path) -> None:
    # Issue 31: a port that is not a number was a traceback in simulate and compare; a host
    # without http:// read "unsupported protocol 'localhost://'", and in eval only after every
    # cell had errored through its retries (7 s, a page of identical failures).
    result = cli(*command, "--url", url, cwd=tmp_path)
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []  # eval opened its store (a new file) before refusing
    assert result.stderr == (
        "perception-llm: error: --url takes an http:// or https:// base URL, e.g. "
        f"http://127.0.0.1:8000/v1, got {url!r}\n"
    )


def test_eval_against_nothing_is_one_line_before_any_cell(tmp_path: Path) -> None:
    # Issue 31: README "Command line": an unreachable endpoint prints one line, exit 2. eval ran
    # every cell through its retries and printed a matrix of errors first.
    url = free_port_url()
    result = cli("eval", "perception-basics", "--url", url, "--db", f"sqlite:///{tmp_path}/e.db")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"perception-llm: error: cannot reach {url}: ")
    assert result.stderr.count("\n") == 1


def test_compare_in_process_refuses_an_unknown_template_without_a_passing_port() -> None:
    # Issue 31: the refusal named the in-process server's ephemeral address as if the user had
    # given it ("http://127.0.0.1:44115/v1 offers: ...").
    result = cli("compare", "raven-cooking", "--prompts", "default,fancy")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "perception-llm: error: unknown prompt template 'fancy'; "
        "available: default, minimal, passthrough\n"
    )


@pytest.mark.parametrize("suite", ["no-such-suite", "bad.yaml"])
def test_eval_refusing_its_suite_leaves_no_database_behind(tmp_path: Path, suite: str) -> None:
    # Issue 31: the run store was opened (a new perception-llm-evals.db) before the suite was read.
    (tmp_path / "bad.yaml").write_text("templates: [default\n")
    result = cli("eval", suite, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]
