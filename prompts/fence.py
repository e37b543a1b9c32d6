"""The data fence around untrusted text (perception), after Microsoft's "spotlighting".

Perception is user-controlled (a screen share carries whatever is on the screen), so it reaches
the model only inside a fence whose markers carry a per-request random nonce:
`⟦perception 3f9a…⟧ … ⟦/perception 3f9a…⟧`. The instructions name those exact markers. Text
inside cannot close or forge the fence because `escape_fenced` removes the bracket characters the
markers are made of, and strips chat-template control tokens (`<|im_start|>`, `[INST]`, …) that
could end the turn in a model's own template. Raw Tavus markup and Basic prefixes are
neutralised too, so they never reach the model (OWASP LLM01).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from perception.text import neutralise_markup, strip_invisible

_OPEN, _CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧ : rare in real text, and removed from fenced text
_BRACKET_LOOKALIKES = str.maketrans(
    {
        _OPEN: "[",
        _CLOSE: "]",
        "\u301a": "[",  # 〚
        "\u301b": "]",  # 〛
        "\u27e8": "<",  # ⟨
        "\u27e9": ">",  # ⟩
    }
)
# Special tokens of common chat templates (ChatML, Llama 2/3, Gemma, Mistral, Phi, Falcon...).
CHAT_TEMPLATE_TOKENS = re.compile(
    r"<\|[A-Za-z0-9_ .:/-]{1,40}\|>"  # <|im_start|>, <|eot_id|>, <|start_header_id|> ...
    r"|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<\|?(?:endoftext|eos|bos)\|?>",
    re.I,
)
BASIC_PREFIXES = re.compile(r"(USER_SPEECH|VISUAL_SCENE)\s*:", re.I)


@dataclass(frozen=True, slots=True)
class Fence:
    nonce: str

    @property
    def open(self) -> str:
        return f"{_OPEN}perception {self.nonce}{_CLOSE}"

    @property
    def close(self) -> str:
        return f"{_OPEN}/perception {self.nonce}{_CLOSE}"


def new_fence(nonce: str | None = None) -> Fence:
    return Fence(nonce or secrets.token_hex(8))


def neutralise_prefixes(text: str) -> str:
    """`USER_SPEECH:` → `USER SPEECH:`: readable, but no longer a Tavus prefix."""
    if "_" not in text:
        return text
    return BASIC_PREFIXES.sub(lambda m: m.group(1).replace("_", " ") + ":", text)


def _neutralise_once(text: str) -> str:
    # Prefixes first: neutralising `<USER_SPEECH:` as markup would leave `[user_SPEECH:`.
    text = neutralise_prefixes(text)
    if "<" in text or "[" in text:
        text = neutralise_markup(CHAT_TEMPLATE_TOKENS.sub("", text))
    return text


def neutralise_untrusted(text: str) -> str:
    """What any user-derived text gets before it reaches the model (fenced or not).

    Repeated until nothing changes: removing `<|im_end|>` from `USER_<|im_end|>SPEECH:` would
    otherwise join a new prefix. Each pass only removes or defuses, so it ends quickly.
    """
    text = strip_invisible(text)
    while True:
        neutral = _neutralise_once(text)
        if neutral == text:
            return text
        text = neutral


def escape_fenced(text: str) -> str:
    """Make `text` safe to place inside a fence: it cannot contain a fence marker after this."""
    return neutralise_untrusted(text).translate(_BRACKET_LOOKALIKES)
