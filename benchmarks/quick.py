"""`--quick` for every benchmark the README shows: a smoke run of a few seconds, so the suite can
run the README's benchmark commands as written (tests/test_readme.py). Its numbers mean little;
quote full runs only."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "a smoke run of a few seconds (the README test runs this); its numbers mean little"


def parse_args(parser: argparse.ArgumentParser, **quick: Any) -> argparse.Namespace:
    """`parser`'s arguments, plus `--quick`, which sets each of `quick` (a smaller run)."""
    parser.add_argument("--quick", action="store_true", help=HELP)
    args = parser.parse_args()
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args
