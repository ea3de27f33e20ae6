"""The trainsim command line: the only place that prints or exits.

Exit codes: 0 ok, 2 bad input (a message naming field, value and rule), 3 infeasible layout (every reason).
Each verb lives in its own module with `register(subparsers)`; the module's handler returns an exit code.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import InfeasibleLayoutError, SpecError
from . import common

#: Verb modules, in the order `trainsim --help` lists them. A module not present in this build is skipped.
VERB_MODULES = ("estimate", "simulate", "search", "compare", "plan", "sweep", "validate", "calibrate", "catalog",
                "frameworks")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="trainsim",
        description="Distributed-training efficiency simulator: MFU, step time and memory of LLM training layouts.")
    parser.add_argument("--version", action="version", version=f"trainsim {common.version()}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    import importlib.util
    for name in VERB_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SpecError as err:
        common.error(str(err))
        return 2
    except InfeasibleLayoutError as err:
        common.error(str(err))
        return 3
    except KeyboardInterrupt:
        common.error("interrupted")
        return 130
    except BrokenPipeError:
        return 0
