"""Removing secrets from text that leaves the process (client errors, replies, stored calls, logs).

An upstream may echo the key it was sent inside its error message ("Incorrect API key provided:
sk-…"). Anything we relay, store or log passes through the app's one `Redactor`
(`Services.redactor`); a logging filter applies the same object to every record as a second
line of defence. Secrets shorter than four characters are not
redacted (they would blank out ordinary words); a real key is far longer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter would blank out ordinary words; a real key is far longer
# Secrets this long or longer are also taken out of a model's reply (server/upstream/events.py);
# shorter ones (a header value like "true", a loopback key) could be ordinary words there.
REPLY_SECRET_MIN_CHARS = 16


class Redactor:
    """Takes every known secret out of a text. One per app, owned by `Services` and handed to
    everything that redacts (capture, upstream errors, replies, logs), so a secret registered
    later with `add` (a key learnt at run time) is redacted by all of them from then on.

    `for_replies()` is the view for what the user hears: the same secrets, but only those long
    enough to be keys. The compiled pattern is swapped whole, so a reader on another thread (the
    capture writer) sees the old set or the new one, never a half-built one."""

    def __init__(self, secrets: Iterable[str] = (), min_chars: int = MIN_SECRET_CHARS) -> None:
        self.min_chars = min_chars
        self._secrets: set[str] = set()
        self._views: list[Redactor] = []
        self._state: tuple[re.Pattern[str] | None, int] = (None, 0)
        self._lock = threading.Lock()
        self.add(*secrets)

    @property
    def longest(self) -> int:
        return self._state[1]

    def add(self, *secrets: str) -> None:
        """Redact these too, here and in every view, from now on."""
        with self._lock:
            new = {s for s in secrets if len(s) >= self.min_chars} - self._secrets
            if new:
                self._secrets |= new
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._state = (re.compile("|".join(map(re.escape, ordered))), len(ordered[0]))
            views = list(self._views)
        for view in views:
            view.add(*secrets)

    def for_replies(self) -> Redactor:
        """A view with only the secrets of at least `REPLY_SECRET_MIN_CHARS` characters."""
        view = Redactor(self._secrets, min_chars=max(self.min_chars, REPLY_SECRET_MIN_CHARS))
        with self._lock:
            self._views.append(view)
            missed = self._secrets - view._secrets  # added between the copy and the append
        view.add(*missed)
        return view

    def redact(self, text: str) -> str:
        pattern = self._state[0]
        if pattern is None:
            return text
        return pattern.sub(REDACTED, text)

    def cut(self, text: str, limit: int) -> str:
        """At most `limit` characters of `text`, redacted first: cutting first could leave the
        beginning of a key that straddled the cut (issue 23). Only the part that can reach the
        result is scanned, so a huge text costs no more than a short one."""
        pattern, longest = self._state
        if pattern is None:
            return text[:limit]
        return pattern.sub(REDACTED, text[: limit + longest])[:limit]


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
