"""What a `perception-llm` command is to the command line: its options, what its `--help` says
beyond them, and the function that runs it, declared in the command's options module
(`server/commands/<module>_options.py`, next to `<module>.py`, which runs it).

The declaration names the function instead of importing it: the command modules import their
dependencies (the openai SDK, SQLAlchemy, uvicorn, the app) at the top, which took `--help` and a
usage error from 40-130 ms to 0.7-2.4 s when the options sat in them."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import NamedTuple


class Command(NamedTuple):  # not a dataclass: importing dataclasses costs --help ~10 ms
    # "server.commands.module:function": imported only when the command runs.
    runs: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    # The end of its --help: examples that run as written from a clone
    # (tests/test_newcomer_cli.py checks each command shows its own).
    examples: str
    description: str | None = None

    def run(self, args: argparse.Namespace) -> int:
        module, function = self.runs.split(":")
        status: int = getattr(importlib.import_module(module), function)(args)
        return status
