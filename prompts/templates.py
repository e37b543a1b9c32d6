"""Prompt templates are files: `NAME.j2` with a small front matter and two Jinja2 blocks.

```
---
description: One line saying what this template is for.
passthrough: false        # optional; true sends the original messages unchanged
---
{% block instructions %}…system text that explains the fence…{% endblock %}
{% block perception %}…the fenced perception block…{% endblock %}
```

Loading is strict, as in simonw/llm's templates: an unknown front-matter key, a missing
description, a missing block or a syntax error is a `TemplateError` naming the file, and a
variable the template uses but the renderer does not provide is a `TemplateError` naming the
variable (Jinja2's `StrictUndefined`). Templates run in Jinja2's sandbox: a template file from a
user directory cannot reach Python internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from prompts.fence import new_fence
from prompts.view import Change, Item

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
REQUIRED_BLOCKS = ("instructions", "perception")
_FRONT_MATTER_KEYS = {"description", "passthrough"}


class TemplateError(Exception):
    """A template that cannot be loaded or rendered; the message names the file or variable."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    description: str
    passthrough: bool
    source: Path
    jinja: jinja2.Template | None  # None for passthrough templates

    def render_block(self, block: str, variables: dict[str, Any]) -> str:
        if self.jinja is None:
            raise TemplateError(f"template {self.name!r} is passthrough; it renders nothing")
        try:
            context = self.jinja.new_context(variables)
            return "".join(self.jinja.blocks[block](context)).strip()
        except jinja2.UndefinedError as error:
            raise TemplateError(
                f"template {self.name!r} uses an unknown variable: {error.message}"
            ) from None
        except jinja2.TemplateError as error:
            raise TemplateError(f"template {self.name!r} failed to render: {error}") from None


def _environment(sandboxed: bool = True) -> jinja2.Environment:
    """A user's templates run sandboxed (a template file must not reach Python internals); the
    built-in ones, shipped with the package, need not pay for it: the sandbox's attribute
    checks were a quarter of rendering the default template."""
    factory = SandboxedEnvironment if sandboxed else jinja2.Environment
    return factory(
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # prompts are plain text; escaping is the fence's job
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _split_front_matter(path: Path, text: str) -> tuple[dict[str, str], str, int]:
    """(front matter, body, number of lines before the body)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise TemplateError(f"{path}: must start with a '---' front matter line")
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        raise TemplateError(f"{path}: front matter is not closed with '---'") from None
    meta: dict[str, str] = {}
    for number, line in enumerate(lines[1:end], 2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep:
            raise TemplateError(f"{path}:{number}: expected 'key: value'")
        if key not in _FRONT_MATTER_KEYS:
            known = ", ".join(sorted(_FRONT_MATTER_KEYS))
            raise TemplateError(f"{path}:{number}: unknown key {key!r} (known: {known})")
        meta[key] = value.split(" #", 1)[0].strip()
    return meta, "\n".join(lines[end + 1 :]), end + 1


def load_template(path: Path, environment: jinja2.Environment | None = None) -> PromptTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TemplateError(f"{path}: cannot read: {error}") from None
    meta, body, offset = _split_front_matter(path, text)
    description = meta.get("description", "")
    if not description:
        raise TemplateError(f"{path}: front matter needs a one-line 'description'")
    passthrough_value = meta.get("passthrough", "false").lower()
    if passthrough_value not in ("true", "false"):
        raise TemplateError(f"{path}: 'passthrough' must be true or false")
    if passthrough_value == "true":
        return PromptTemplate(path.stem, description, True, path, None)
    try:
        jinja = (environment or _environment()).from_string(body)
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{path}:{error.lineno + offset}: {error.message}") from None
    missing = [block for block in REQUIRED_BLOCKS if block not in jinja.blocks]
    if missing:
        raise TemplateError(f"{path}: missing block(s): {', '.join(missing)}")
    return PromptTemplate(path.stem, description, False, path, jinja)


class TemplateLibrary:
    """The built-in templates plus those of an optional user directory (same name overrides)."""

    def __init__(self, user_dir: Path | None = None) -> None:
        self.templates: dict[str, PromptTemplate] = {}
        directories = [(BUILTIN_DIR, _environment(sandboxed=False))]
        if user_dir is not None:
            directories.append((user_dir, _environment(sandboxed=True)))
        for directory, environment in directories:
            if not directory.is_dir():
                raise TemplateError(f"prompts directory {directory} does not exist")
            root = directory.resolve()
            for path in sorted(directory.glob("*.j2")):
                # A link out of the directory would put any readable file (a key, /etc/...)
                # into every prompt (issue 23): refused at start-up, by name.
                if not path.resolve().is_relative_to(root):
                    raise TemplateError(f"{path}: links outside {directory}; copy the file in")
                self.templates[path.stem] = load_template(path, environment)

        for template in self.templates.values():
            check_renders(template)

    def names(self) -> list[str]:
        return sorted(self.templates)

    def get(self, name: str) -> PromptTemplate:
        try:
            return self.templates[name]
        except KeyError:
            raise TemplateError(
                f"unknown prompt template {name!r}; available: {', '.join(self.names())}"
            ) from None


def check_renders(template: PromptTemplate) -> None:
    """Render `template` once with every variable set, so a typo fails at start-up, not mid-call."""
    if template.passthrough:
        return
    variables: dict[str, Any] = {
        "mode": "raven",
        "fence": new_fence("check"),
        "latest": [Item("emotions", "emotions", "calm")],
        "changes": [Change("emotions", "emotions", ["tense", "calm"])],
    }
    for block in REQUIRED_BLOCKS:
        template.render_block(block, variables)
