"""The prompt-experiment settings (`PERCEPTION_LLM_PROMPT_SPLIT`, issue 25), a part of `Settings`
kept in its own module (as the capture's are)."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, field_validator

from server.capture.settings import CaptureSettings
from server.completion.prompt_split import Split, parse_split


class ExperimentSettings(CaptureSettings):
    prompt_split: str = Field(
        "",
        description=(
            "A/B split of templates over conversations, e.g. `default=50,minimal=50`: each "
            "conversation id keeps one template for its whole life (a stable hash, the same on "
            "every replica); a request's own choice still wins. Empty: no split."
        ),
    )

    @field_validator("prompt_split")
    @classmethod
    def _split_is_well_formed(cls, value: str) -> str:
        parse_split(value)  # SplitError is a ValueError: one line naming the variable
        return value

    @cached_property
    def split(self) -> Split:
        """The parsed A/B split (validated when the settings were built)."""
        return parse_split(self.prompt_split)
