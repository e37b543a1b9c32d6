"""The README runner's pure parts: reading fences and marks, and comparing shown output."""

from __future__ import annotations

import pytest

from tests.readme_blocks import ReadmeFormatError, commands, matches, normalise, read_blocks

README = """\
# Title

```sh
.venv/bin/perception-llm parse x.json \\
    --pretty   # a comment
# a comment line

echo two
```

<!-- output -->
```text
mode: raven
```

<!-- not-run: needs Docker -->
```sh
docker build .
```

```text
a layout
```
"""


def test_blocks_marks_and_outputs_are_read() -> None:
    blocks = read_blocks(README)
    assert [(b.line, b.language) for b in blocks] == [
        (3, "sh"),
        (12, "text"),
        (17, "sh"),
        (21, "text"),
    ]
    assert blocks[0].output == "mode: raven\n" and blocks[1].is_output
    assert blocks[2].not_run == "needs Docker" and blocks[0].not_run is None
    assert not blocks[3].is_output and blocks[3].output is None
    assert commands(blocks[0].text) == [
        ".venv/bin/perception-llm parse x.json      --pretty   # a comment",
        "echo two",
    ]


@pytest.mark.parametrize(
    ("markdown", "says"),
    [
        ("```\ncode\n```\n", "a fence needs one of"),
        ("```bash\ncode\n```\n", "got 'bash'"),
        ("```sh\ncode\n", "never closed"),
        ("  ```sh\ncode\n  ```\n", "indented fence"),
        ("<!-- output -->\n```text\nx\n```\n", "marks a text block after a sh or python one"),
        ("```json\n{}\n```\n<!-- output -->\n```text\nx\n```\n", "after a sh or python one"),
        ("<!-- not run -->\n```sh\nx\n```\n", "unknown mark"),
        ("<!-- not-run: -->\n```sh\nx\n```\n", "unknown mark"),  # a reason is required
    ],
)
def test_malformed_blocks_are_refused(markdown: str, says: str) -> None:
    with pytest.raises(ReadmeFormatError, match=says):
        read_blocks(markdown)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("a\nb", "a\nb", True),
        ("a\nb", "a\nb\nc", False),
        ("a\n...\nd", "a\nb\nc\nd", True),
        ("a\n...\nd", "a\nd", True),  # zero lines
        ("a\n...", "a\nb", True),
        ("...\nz", "a\nb", False),
        ("a\n...\nc\n...\ne", "a\nb\nc\nd\ne", True),
    ],
)
def test_output_matching(expected: str, actual: str, ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_volatile_values_are_normalised_explicitly() -> None:
    raw = (
        "time to first token 3 ms, total 12.5 ms, 2.07 s at 2026-12-03 08:52:25 "
        "chatcmpl-ab12 call_Xy9 sim-0123456789ab \u27e6perception 9f3a\u27e7 "
        "http://127.0.0.1:41647/v1  \n"
    )
    assert normalise(raw, port=41647) == (
        "time to first token N ms, total N ms, N s at YYYY-MM-DD hh:mm:ss "
        "chatcmpl-ID call_ID sim-ID \u27e6perception NONCE\u27e7 http://127.0.0.1:8000/v1"
    )
    # Everything else is compared as it is: a changed word is a failure.
    assert normalise("You said: hi") != normalise("You said: hello")
