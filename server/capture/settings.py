"""The capture settings (`PERCEPTION_LLM_CAPTURE*`), a part of `Settings` kept in its own module."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from perception import CapturePerception

DEFAULT_CAPTURE_URL = "sqlite:///perception-llm-calls.db"
# Where `perception-llm eval` keeps runs without a capture database (the playground reads it).
DEFAULT_EXPERIMENTS_URL = "sqlite:///perception-llm-evals.db"


class CaptureSettings(BaseSettings):
    capture: str | None = Field(
        None,
        description=(
            "Record every call to this database (`serve --capture` uses "
            f"`{DEFAULT_CAPTURE_URL}`, a file in the working directory); "
            "`postgresql://user:pass@host/db` for several replicas. Unset: nothing is recorded."
        ),
    )
    capture_perception: CapturePerception = Field(
        "full",
        description=(
            "What the capture keeps of perception: `full`; `shapes` (which fields, and their "
            "lengths); `no_screen` (everything but screen-share text and `<user_*>` tags the field "
            "table does not name)."
        ),
    )
    capture_queue_size: int = Field(
        1000, ge=1, description="Calls waiting to be written; past it calls are dropped, counted."
    )
    capture_max_age_days: float = Field(
        7.0, gt=0, description="Captured calls older than this are deleted."
    )
    capture_max_calls: int = Field(
        100_000, ge=1, description="Most captured calls kept; the oldest beyond it are deleted."
    )
    capture_max_megabytes: int = Field(
        1024,
        ge=1,
        description="Most space the captured calls take (UTF-8 megabytes); the oldest go first.",
    )
