"""Re-encode a system-layout Tavus request in the user-role layout (issue 22), for tests.

The user-role layout as public code written against live calls shows it
(github.com/harrydaihaolin/Jarvis, proxy/src/translate.test.js and conversation.test.js at
80ed9e5): perception as perception-only user messages, some inside
`<additional_system_instructions>`, values wrapped in newlines; the language rule as a wrapped
user message; raven-1 audio as its own user message before the speech.
"""

from __future__ import annotations

from typing import Any

from perception.speech import split_leading_audio
from perception.tags import scan_tags

WRAPPER = "additional_system_instructions"


def wrapped(text: str) -> str:
    return f"<{WRAPPER}>{text}</{WRAPPER}>"


def _is_perception_message(text: str) -> bool:
    tags = scan_tags(text)
    return bool(tags) and not text[: tags[0].start].strip()


def to_user_role(messages: list[dict[str, Any]], *, wrap: str = "alternate") -> list[Any]:
    """`messages` with system-role perception, the language rule and leading audio moved to
    user-role messages. `wrap`: "all", "none" or "alternate" (wrapper on every other one)."""
    converted: list[Any] = []
    count = 0
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str):
            converted.append(message)
            continue
        if role == "system" and content.strip().lower() == "respond in english":
            converted.append({"role": "user", "content": wrapped(content)})
        elif role == "system" and _is_perception_message(content):
            count += 1
            use_wrapper = wrap == "all" or (wrap == "alternate" and count % 2 == 1)
            converted.append(
                {"role": "user", "content": wrapped(content) if use_wrapper else content}
            )
        elif role == "user" and (audio := split_leading_audio(content)) and audio.analyses:
            blocks = "".join(
                f"<user_audio_analysis>{value}</user_audio_analysis>" for value in audio.analyses
            )
            converted.append({"role": "user", "content": blocks})
            converted.append({**message, "content": audio.speech})
        else:
            converted.append(message)
    return converted
