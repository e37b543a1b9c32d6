"""Removing configured secrets from text that leaves the process (client errors, log lines).

An upstream may echo the key it was sent inside its error message ("Incorrect API key provided:
sk-…"). Anything we relay or log passes through `Redactor.redact`; a logging filter applies it
to every record as a second line of defence. Secrets shorter than four characters are not
redacted (they would blank out ordinary words); a real key is far longer.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# Secrets this long or longer are also taken out of a model's reply (server/upstream/events.py);
# shorter ones (a header value like "true", a loopback key) could be ordinary words there.
REPLY_SECRET_MIN_CHARS = 16


class Redactor:
    def __init__(self, secrets: list[str]) -> None:
        ordered = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.longest = len(ordered[0]) if ordered else 0
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def cut(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text`, redacted first: cutting first could leave the
        beginning of a key that straddled the cut (issue 23). Only the part that can reach the
        result is scanned, so a huge text costs no more than a short one."""
        return self.redact(text[: limit + self.longest])[:limit]


class RedactingFilter(logging.Filter):
    """Redacts secrets from a record's formatted message (and its arguments) before output."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
