"""Golden tests: each shipped template over the realistic fixture conversations → exact messages.

Goldens live in tests/fixtures/prompts/<template>/<fixture>.json and were reviewed by hand.
After an intended template change, regenerate with `UPDATE_GOLDEN=1 pytest tests/test_prompt_golden.py`
and review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perception import parse_messages
from prompts.fence import new_fence
from prompts.render import render_prompt
from prompts.templates import TemplateLibrary
from tests.conftest import FIXTURES, SAMPLES

CONVERSATIONS = sorted((FIXTURES / "perception").glob("*.json")) + sorted((SAMPLES).glob("*.json"))
TEMPLATES = ["default", "minimal", "passthrough"]
GOLDEN = FIXTURES / "prompts"


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("conversation_file", CONVERSATIONS, ids=lambda p: p.stem)
def test_golden(template: str, conversation_file: Path) -> None:
    messages = json.loads(conversation_file.read_text())["messages"]
    rendered = render_prompt(
        parse_messages(messages),
        messages,
        TemplateLibrary().get(template),
        budget_tokens=5000,
        fence=new_fence("testnonce"),
    )
    golden = GOLDEN / template / f"{conversation_file.stem}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(rendered.messages, indent=2, ensure_ascii=False) + "\n")
    assert rendered.messages == json.loads(golden.read_text())
