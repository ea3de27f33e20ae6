"""The trainsim command line: the only place that prints or exits.

Exit codes: 0 ok, 2 bad input (a message naming field, value and rule; argparse's errors too), 3 infeasible
layout (every reason), 1 an internal error (a bug: one line, no traceback unless TRAINSIM_DEBUG=1).
Each verb lives in its own module with `register(subparsers)`; the module's handler returns an exit code.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import InfeasibleLayoutError, SpecError
from ..specs.base import shorten
from . import common

#: Verb modules, in the order `trainsim --help` lists them. A module not present in this build is skipped.
VERB_MODULES = ("estimate", "simulate", "search", "compare", "plan", "sweep", "validate", "calibrate", "catalog",
                "frameworks")


class _Version(argparse.Action):
    """argparse's "version" action with the version looked up only when asked for (reading the installed package's
    metadata imports importlib.metadata and the email parser: time every other command would pay)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit"):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        formatter = parser._get_formatter()
        formatter.add_text(f"trainsim {common.version()}")
        parser._print_message(formatter.format_help(), sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = common.ArgumentParser(
        prog="trainsim",
        description="Distributed-training efficiency simulator: MFU, step time and memory of LLM training layouts.")
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--no-calibration", action="store_true",
                        help="load the hardware profiles without their calibration overlays (sourced values only; "
                             "see hardware_profiles/README.md)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    import importlib.util
    for name in VERB_MODULES:
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _run_quietly(args) -> int:
    """The handler with numpy's floating-point RuntimeWarnings kept from the user (an engine's NaN or inf is
    blanked or reported in the output, never as a warning line); TRAINSIM_DEBUG=1 shows them."""
    if os.environ.get("TRAINSIM_DEBUG"):
        return int(args.handler(args) or 0)
    import warnings

    import numpy as np
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return int(args.handler(args) or 0)


def _one_command_gc() -> None:
    """Garbage collection tuned for a process that runs one command: what is alive now (modules, classes,
    pydantic schemas: ~55k objects, none of them garbage) moves to the permanent generation so that no later
    collection traverses it again (gc.freeze), and the youngest generation is collected every 50,000 net
    allocations instead of 700 (a command's own imports and objects live to its end; cyclic garbage is still
    collected). Measured on `trainsim simulate` at 12,288 devices: the collector took 0.12-0.15 s of ~0.6 s CPU
    with the defaults, ~0.02 s with this (issue #13).

    Source: Python docs, gc.freeze and gc.set_threshold (https://docs.python.org/3/library/gc.html)."""
    import gc
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (`--help` and `--version` exit through SystemExit(0), as argparse
    does). An unexpected exception is reported in one line with exit 1 (TRAINSIM_DEBUG=1 shows the traceback).

    Called without `argv` (the `trainsim` program, `python -m simulator`) it owns the process and tunes its
    garbage collection for one command (_one_command_gc); called with `argv` (tests, notebooks) it leaves the
    interpreter's settings alone."""
    if argv is None:
        _one_command_gc()
    try:
        args = build_parser().parse_args(argv)
        from ..specs.overlay import set_calibration
        set_calibration(not getattr(args, "no_calibration", False))
        common.check_outputs(args)
        return _run_quietly(args)
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
    except Exception as err:  # noqa: BLE001 - the CLI never ends in a traceback
        if os.environ.get("TRAINSIM_DEBUG"):
            raise
        common.error(f"internal error, a bug in trainsim (please report it with the command): "
                     f"{type(err).__name__}: {shorten(str(err), 400)}; TRAINSIM_DEBUG=1 shows the traceback")
        return 1
