"""Template files: strict loading, named errors, user directories, the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompts.templates import TemplateError, TemplateLibrary, load_template

GOOD = """---
description: A test template.
---
{% block instructions %}Data is between {{ fence.open }} and {{ fence.close }}.{% endblock %}
{% block perception %}{{ fence.open }}{% for item in latest %}{{ item.label }}={{ item.value }}{% endfor %}{{ fence.close }}{% endblock %}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.j2"
    path.write_text(text)
    return path


def test_builtins_have_one_line_descriptions() -> None:
    library = TemplateLibrary()
    assert library.names() == ["default", "minimal", "passthrough"]
    for name in library.names():
        description = library.get(name).description
        assert description and "\n" not in description


def test_user_directory_adds_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, "mine", GOOD)
    write(tmp_path, "minimal", GOOD.replace("A test template.", "My minimal."))
    library = TemplateLibrary(tmp_path)
    assert library.names() == ["default", "mine", "minimal", "passthrough"]
    assert library.get("minimal").description == "My minimal."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter", "must start with a '---'"),
        ("---\ndescription: x\n", "not closed"),
        ("---\ndescription: x\ncolour: red\n---\n", "unknown key 'colour'"),
        ("---\nnot a pair\n---\n", "expected 'key: value'"),
        ("---\ndescription:\n---\n", "needs a one-line 'description'"),
        ("---\ndescription: x\npassthrough: maybe\n---\n", "'passthrough' must be true or false"),
        (
            "---\ndescription: x\n---\n{% block instructions %}{% endblock %}",
            "missing block(s): perception",
        ),
        ("---\ndescription: x\n---\n{% block instructions %}{% if %}{% endblock %}", "broken.j2:4"),
    ],
)
def test_broken_templates_are_named_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "broken", text)
    with pytest.raises(TemplateError) as caught:
        load_template(path)
    assert message in str(caught.value)
    assert "broken.j2" in str(caught.value)


def test_unknown_variable_fails_at_load_naming_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "typo",
        GOOD.replace("item.value", "item.valeu").replace(
            "{{ fence.close }}{% endblock %}\n", "{{ lastest }}{{ fence.close }}{% endblock %}\n"
        ),
    )
    with pytest.raises(TemplateError) as caught:
        TemplateLibrary(tmp_path)
    assert "typo" in str(caught.value) and (
        "valeu" in str(caught.value) or "lastest" in str(caught.value)
    )


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    write(
        tmp_path, "evil", GOOD.replace("{{ fence.open }} and", "{{ fence.__class__.__mro__ }} and")
    )
    with pytest.raises(TemplateError):
        TemplateLibrary(tmp_path)


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(TemplateError) as caught:
        TemplateLibrary().get("fancy")
    assert (
        str(caught.value)
        == "unknown prompt template 'fancy'; available: default, minimal, passthrough"
    )


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="does not exist"):
        TemplateLibrary(tmp_path / "nope")


def test_a_template_linking_outside_its_directory_is_refused(tmp_path: Path) -> None:
    # Issue 23 (LOW): a user template directory followed symlinks to any readable file.
    secret = tmp_path / "outside.j2"  # a valid template, so only the link can be refused
    secret.write_text(GOOD)
    user = tmp_path / "prompts"
    user.mkdir()
    (user / "leak.j2").symlink_to(secret)
    with pytest.raises(TemplateError, match="links outside"):
        TemplateLibrary(user)
