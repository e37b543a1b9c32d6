"""What a `perception-llm` command is to the command line: the function that runs it, the options
it takes and what its `--help` says beyond them, kept in the command's own module next to that
function. `server/cli.py` imports only the module of the command being run."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    # The end of its --help: examples that run as written from a clone
    # (tests/test_newcomer_cli.py checks each command shows its own).
    examples: str
    description: str | None = None
