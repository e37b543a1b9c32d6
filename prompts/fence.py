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

import functools
import re
import secrets
from dataclasses import dataclass

from perception import neutralise_markup, strip_invisible

_OPEN, _CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧ : rare in real text, and removed from fenced text
# The markers, spelt here only: whoever looks for a fence in a prompt (echo, capture privacy,
# the eval cache) uses these, whatever the nonce.
OPENING = f"{_OPEN}perception "  # `⟦perception <nonce>⟧`, up to its nonce
CLOSING = f"{_OPEN}/perception "  # `⟦/perception <nonce>⟧`, up to its nonce
MARKER_END = _CLOSE
MARKER_RE = re.compile(rf"{_OPEN}/?perception ([0-9a-f]{{4,64}}){_CLOSE}")  # either, with nonce
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
# Compatibility forms of the characters our markers and chat tokens are made of (what NFKC would
# fold: fullwidth and small forms), folded first so a fullwidth `</user_screenshare>`, a small-form
# `<user_x>`, a fullwidth `USER_SPEECH:` and DeepSeek's fullwidth-bar `<|User|>` meet the same
# patterns as their ASCII spellings.
_MARKUP_LOOKALIKES: dict[str, str] = {
    "<": "\uff1c\ufe64",  # FULLWIDTH and SMALL LESS-THAN SIGN
    ">": "\uff1e\ufe65",  # FULLWIDTH and SMALL GREATER-THAN SIGN
    "/": "\uff0f",  # FULLWIDTH SOLIDUS
    "_": "\uff3f\ufe4d\ufe4e\ufe4f",  # FULLWIDTH, DASHED, CENTRELINE and WAVY LOW LINE
    ":": "\uff1a\ufe55",  # FULLWIDTH and SMALL COLON
    "|": "\uff5c",  # FULLWIDTH VERTICAL LINE (DeepSeek's special tokens use it)
    "[": "\uff3b",  # FULLWIDTH LEFT SQUARE BRACKET
    "]": "\uff3d",  # FULLWIDTH RIGHT SQUARE BRACKET
}
# One substitution per ASCII target, each with a literal replacement: it stays in C whatever
# the input (str.translate with a dict took 60 ms per MB on text with any non-ASCII character).
_LOOKALIKE_FOLDS = [
    (re.compile(f"[{chars}]"), ascii_char) for ascii_char, chars in _MARKUP_LOOKALIKES.items()
]
_ANY_LOOKALIKE = re.compile("[" + "".join(_MARKUP_LOOKALIKES.values()) + "]")


def fold_lookalikes(text: str) -> str:
    if _ANY_LOOKALIKE.search(text) is None:
        return text
    for pattern, ascii_char in _LOOKALIKE_FOLDS:
        text = pattern.sub(ascii_char, text)
    return text


# Special tokens of common chat templates: ChatML, Llama 2/3, Gemma, Phi, Falcon, DeepSeek
# (`<|end▁of▁sentence|>` once its fullwidth bars are folded) and Mistral's bracketed words.
CHAT_TEMPLATE_TOKENS = re.compile(
    r"<\|[A-Za-z0-9_ .:/\u2581-]{1,40}\|>"  # <|im_start|>, <|eot_id|>, <|end▁of▁sentence|> ...
    r"|\[/?(?:INST|SYSTEM_PROMPT|TOOL_RESULTS|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_CONTENT|IMG)\]"
    r"|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<\|?(?:endoftext|eos|bos)\|?>"
    # Reasoning markers (DeepSeek-R1/Qwen `<think>`, Magistral `[THINK]`), GLM's `[gMASK]<sop>`,
    # Gemma 3's image markers (issue 23: they survived).
    r"|</?think>|\[/?THINK\]|\[[gs]?MASK\]|<[se]op>|<(?:start|end)_of_image>",
    re.I,
)
# The `_` of a Basic prefix, found from the `_` itself: a literal start keeps the scan in C at
# ~5 ms per MB even on text made of `u` and `v` (a case-insensitive alternation took 36 ms).
_PREFIX_UNDERSCORE = re.compile(
    r"_(?:(?<=user_)(?=speech\s*+:)|(?<=visual_)(?=scene\s*+:))", re.I | re.A
)


@dataclass(frozen=True, slots=True)
class Fence:
    nonce: str

    @property
    def open(self) -> str:
        return f"{OPENING}{self.nonce}{MARKER_END}"

    @property
    def close(self) -> str:
        return f"{CLOSING}{self.nonce}{MARKER_END}"


def fenced_bodies(text: str) -> list[tuple[int, int]]:
    """The (start, end) span of the body of every complete fenced block in `text`, in order: from
    past the opening marker to the closing marker. One pass of `str.find`s (linear)."""
    spans: list[tuple[int, int]] = []
    position = 0
    while True:
        start = text.find(OPENING, position)
        opened = text.find(MARKER_END, start) if start >= 0 else -1
        end = text.find(CLOSING, opened) if opened >= 0 else -1
        if end < 0:
            return spans
        spans.append((opened + 1, end))
        position = end


def new_fence(nonce: str | None = None) -> Fence:
    return Fence(nonce or secrets.token_hex(8))


def neutralise_prefixes(text: str) -> str:
    """`USER_SPEECH:` → `USER SPEECH:`: readable, but no longer a Tavus prefix."""
    if "_" not in text:
        return text
    return _PREFIX_UNDERSCORE.sub(" ", text)


def strip_chat_tokens(text: str) -> str:
    """Remove chat-template control tokens, until none is left.

    Repeated because removing one can join another (`<<|im_end|>|eot_id|>`); each pass only
    removes text, so it ends quickly, and usually after one pass that found nothing.
    """
    while "<" in text or "[" in text:
        stripped = CHAT_TEMPLATE_TOKENS.sub("", text)
        if stripped == text:
            break
        text = stripped
    return text


# Tavus resends the whole history with every request: texts neutralised a moment ago are
# remembered (short ones; the function is pure).
CACHED_TEXT_CHARS = 4096  # with 2,048 entries: at most ~16 MB however hostile the texts


def neutralise_untrusted(text: str) -> str:
    """What any user-derived text gets before it reaches the model (fenced or not); see
    `_neutralise_untrusted`."""
    if len(text) <= CACHED_TEXT_CHARS:
        return _neutralise_cached(text)
    return _neutralise_untrusted(text)


@functools.lru_cache(maxsize=2048)
def _neutralise_cached(text: str) -> str:
    return _neutralise_untrusted(text)


def _neutralise_untrusted(text: str) -> str:
    """What any user-derived text gets before it reaches the model (fenced or not).

    Token removal runs first because it can join text into a prefix or a tag
    (`USER_<|im_end|>SPEECH:`); defusing prefixes and markup only replaces characters in place,
    so it cannot create anything new and needs one pass. Linear in the text.
    """
    text = strip_chat_tokens(fold_lookalikes(strip_invisible(text)))
    # Prefixes before markup: defusing `<USER_SPEECH:` as markup would leave `[user_SPEECH:`.
    return neutralise_markup(neutralise_prefixes(text))


def escape_fenced(text: str) -> str:
    """Make `text` safe to place inside a fence: it cannot contain a fence marker after this.

    The bracket look-alikes become ASCII *before* neutralising: the other way round, escaping
    turned `⟨|im_start|⟩`, `〚INST〛` and `⟨user_x⟩` into the very control tokens and markup it
    had just removed (review of issue 23). Neutralising only removes text or writes `[`, ` `
    and `]`, so the result still holds no fence bracket."""
    return neutralise_untrusted(text.translate(_BRACKET_LOOKALIKES))
