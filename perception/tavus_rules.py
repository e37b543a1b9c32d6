"""Tavus' own rules as we render them: the closed vocabulary for rules found in user-role text.

Tavus may send its rules as user-role `<additional_system_instructions>` messages (public code
written against live calls: github.com/harrydaihaolin/Jarvis, proxy/src/translate.test.js at
80ed9e5, `<additional_system_instructions>respond in english</additional_system_instructions>`).
User-role text can be typed by the user (`conversation.respond`, text chat), so a wrapper grants
nothing: a rule is recognised only when it is one of these, and what reaches the system side is
the text below, rendered by us, never the raw text. Anything else stays in the user's turn as
data (issue 22).
"""

from __future__ import annotations

import re

from perception.models import RuleKind

# Languages a `respond in <language>` rule may name (Tavus' conversational languages and the
# common spellings of the world's most spoken ones). Lower case, as Tavus writes the rule.
LANGUAGES = frozenset(
    {
        "arabic", "bengali", "bulgarian", "cantonese", "catalan", "chinese", "croatian",
        "czech", "danish", "dutch", "english", "filipino", "finnish", "french", "german",
        "greek", "hebrew", "hindi", "hungarian", "indonesian", "italian", "japanese",
        "korean", "malay", "mandarin", "norwegian", "persian", "polish", "portuguese",
        "romanian", "russian", "slovak", "spanish", "swahili", "swedish", "tagalog", "tamil",
        "thai", "turkish", "ukrainian", "urdu", "vietnamese",
    }
)  # fmt: skip
_LANGUAGE_RULE = re.compile(r"respond(?: only)? in ([a-z]{2,20})\.?", re.A)
TIMEZONE_UNKNOWN = "The user's timezone is unknown."

# Tavus' published perception preambles, verbatim (tests/fixtures/tavus/preambles.json:
# docs.tavus.io, Webhooks and Callbacks, and the CVI FAQ on transcripts).
RAVEN_PREAMBLE = (
    "You are in a live video conference call with a user. You'll receive messages "
    "containing the user's speech and system messages containing visual information about "
    "the user. These system messages will contain the following visual information: - "
    "user's appearance inside the <user_appearance></user_appearance> tag - user's "
    "emotions inside the <user_emotions></user_emotions> tag If the user is sharing their "
    "screen, you will also receive a <user_screen></user_screen> tag containing the screen "
    "share. If you do use the visual information, follow these guidelines: - Do not refer "
    "to the visual information as system messages. Instead, act and respond as if you are "
    "actually seeing this live. - If the user's query is about their physical appearance, "
    "gestures, expressions, or the environment seen through the webcam, use only the "
    "content within the <user_appearance> and <user_emotions> tags. - If the query "
    "pertains to what is being displayed on the screen share, refer exclusively to the "
    "content within the <user_screen> tag. - Ensure that your answer is based solely on "
    "the information found in the appropriate tag(s) for the question at hand. DO NOT "
    "INCORPORATE ANY VISUAL INFORMATION TO YOUR RESPONSE IF IT'S NOT RELEVANT."
)
BASIC_PREAMBLE = (
    "You are in a live video conference call with a user. You will get user message with "
    "two identifiers, 'USER SPEECH:' and 'VISUAL SCENE:', where 'USER SPEECH:' is what the "
    "person actually tells you, and 'VISUAL SCENE:' is what you are seeing when you look "
    "at them. Only use the information provided in 'VISUAL SCENE:' if the user asks what "
    "you see. Don't output identifiers such as 'USER SPEECH:' or 'VISUAL SCENE:' in your "
    "response."
)


def _folded(text: str) -> str:
    return " ".join(text.split()).lower()


_PUBLISHED = {_folded(text): text for text in (RAVEN_PREAMBLE, BASIC_PREAMBLE)}


def canonical_rule(text: str) -> tuple[RuleKind, str] | None:
    """The rule `text` is, rendered from the closed vocabulary; None when it is none of them."""
    if len(text) > 2 * len(RAVEN_PREAMBLE):
        return None  # longer than any rule we know: not worth folding
    folded = _folded(text)
    language = _LANGUAGE_RULE.fullmatch(folded)
    if language is not None and language.group(1) in LANGUAGES:
        return "language", f"respond in {language.group(1)}"
    if folded.rstrip(".") == TIMEZONE_UNKNOWN.lower().rstrip("."):
        return "datetime", TIMEZONE_UNKNOWN
    preamble = _PUBLISHED.get(folded)  # a published preamble, word for word
    return ("tavus_perception_preamble", preamble) if preamble is not None else None
