"""Shared CLI helpers: argument types, scenario flags, output."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys

from rich.console import Console

from ..errors import SpecError
from ..specs.base import MAX_BATCH, MAX_DEVICES, MAX_LAYERS, MAX_SEQ_LEN, shorten


def version() -> str:
    try:
        from importlib.metadata import version as v
        return v("trainsim")
    except Exception:  # not installed (running from a checkout)
        return "0.1.0"


#: Width of the output when it is not a terminal (a pipe or a file) and $COLUMNS is not set: wide enough that no
#: table is squeezed or cut (rich would use 80); tables and text size to their content, not to this width.
PIPE_WIDTH = 1000
#: Longest error message printed; a longer one is cut (its values are already cut where they are quoted).
MAX_MESSAGE = 20_000


def stdout() -> Console:
    """The console every verb prints to: no markup parsing (text such as `trainsim[dask]` or `^[a-z]*$` prints as
    written), no emoji codes, not cut at 80 columns when piped."""
    con = Console(highlight=False, soft_wrap=False, markup=False, emoji=False)
    if not con.is_terminal and not os.environ.get("COLUMNS"):
        con.width = PIPE_WIDTH
    return con


def error(msg: str) -> None:
    """The one error style: `error: <message>` on stderr, the message printed as written (no markup)."""
    from rich.text import Text
    msg = str(msg)
    if len(msg) > MAX_MESSAGE:
        msg = f"{msg[:MAX_MESSAGE]}... ({len(msg) - MAX_MESSAGE:,} more characters)"
    con = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
    con.print(Text.assemble(("error:", "bold red"), " ", msg))


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """--progress: a progress bar on stderr even when stderr is not a terminal (on a terminal it is shown anyway;
    never on stdout, so JSON and CSV output stay clean)."""
    p.add_argument("--progress", action="store_true",
                   help="show a progress bar on stderr (default: only when stderr is a terminal)")


@contextlib.contextmanager
def progress_bar(args: argparse.Namespace, description: str, wanted: bool = True):
    """A `progress(done, total)` callback drawing a rich progress bar on stderr when `wanted` and stderr is a
    terminal or --progress was given; a no-op callback otherwise."""
    if not wanted or not (getattr(args, "progress", False) or sys.stderr.isatty()):
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    con = Console(stderr=True, highlight=False, markup=False, emoji=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=con.is_terminal) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def warn(msg: str) -> None:
    """A warning in the error style (`warning: <message>` on stderr, no markup); the command goes on."""
    from rich.text import Text
    con = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
    con.print(Text.assemble(("warning:", "bold yellow"), " ", shorten(str(msg), MAX_MESSAGE)))


class UsageError(SpecError):
    """A flag argparse cannot accept: reported like every other bad input (exit 2)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the CLI's one error style (`error: ...`, exit 2, through cli.main) instead of a usage block,
    no prefix matching of long flags (`--glob 1536` is not `--global-batch`), and "did you mean" for flags and
    choices."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown flag is reported by the verb's parser (which knows the verb's flags)."""
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            verb = next((a.choices.get(getattr(ns, a.dest, None)) for a in self._actions
                         if isinstance(a, argparse._SubParsersAction)), None)
            (verb or self).error(f"unrecognized arguments: {' '.join(extra)}")
        return ns

    def error(self, message: str):
        raise UsageError(f"{shorten(message, 400)}{self._hint(message)} (see `{self.prog} --help`)")

    def _hint(self, message: str) -> str:
        import difflib
        flags = [f for f in self._option_string_actions if f.startswith("--")]
        if message.startswith("unrecognized arguments:"):
            words = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("-")]
            close = [c for w in words for c in difflib.get_close_matches(w, flags, n=1, cutoff=0.6)]
            return f"; did you mean {' or '.join(dict.fromkeys(close))}?" if close else ""
        if "invalid choice:" in message:
            for action in self._actions:
                if action.choices and isinstance(action.choices, dict):     # the verb list
                    bad = message.split("invalid choice:", 1)[1].split("(")[0].strip().strip("'")
                    close = difflib.get_close_matches(bad, list(action.choices), n=1)
                    return f"; did you mean '{close[0]}'?" if close else ""
        return ""


#: Flags that name files a command reads, and files or folders it writes (dest names, across the verbs).
INPUT_FLAGS = ("scenario", "model", "hardware", "file", "files", "spec")
OUTPUT_FILE_FLAGS = {"trace": (".json",), "gantt": "image", "plot": "image", "chart": "image", "heatmap": "image",
                     "pareto": "image", "breakdown": "image"}
OUTPUT_DIR_FLAGS = ("plot_dir", "output")
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def _existing_inputs(args: argparse.Namespace) -> list[str]:
    out = []
    for name in INPUT_FLAGS:
        value = getattr(args, name, None)
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, str) and v and os.path.isfile(v):
                out.append(v)
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, output paths that are empty, a folder, in a missing folder, of a format the writer
    cannot produce, given twice, or one of the command's own input files (which the output would replace).
    An existing file that is not an input is replaced, as usual."""
    inputs = _existing_inputs(args)
    seen: dict[str, str] = {}
    for name, kind in OUTPUT_FILE_FLAGS.items():
        path = getattr(args, name, None)
        if path is None:
            continue
        flag = "--" + name.replace("_", "-")
        shown = shorten(repr(path))
        if not isinstance(path, str) or not path.strip():
            raise SpecError(f"{flag}: the file name is empty")
        suffixes = IMAGE_SUFFIXES if kind == "image" else kind
        if os.path.splitext(path)[1].lower() not in suffixes:
            raise SpecError(f"{flag} {shown}: the name must end in {', '.join(suffixes[:3])}"
                            f"{' (or ' + ', '.join(suffixes[3:]) + ')' if len(suffixes) > 3 else ''}")
        if os.path.isdir(path):
            raise SpecError(f"{flag} {shown} is a folder; give a file name")
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise SpecError(f"{flag} {shown}: the folder {shorten(repr(folder))} does not exist")
        clash = next((i for i in inputs if _same_file(i, path)), None)
        if clash is not None:
            raise SpecError(f"{flag} {shown} is one of this command's inputs; writing it would replace that file")
        key = os.path.abspath(path)
        if key in seen:
            raise SpecError(f"{flag} and {seen[key]} name the same file {shown}")
        seen[key] = flag
    for name in OUTPUT_DIR_FLAGS:
        path = getattr(args, name, None)
        if path is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not isinstance(path, str) or not path.strip():
            raise SpecError(f"{flag}: the folder name is empty")
        if os.path.exists(path) and not os.path.isdir(path):
            raise SpecError(f"{flag} {shorten(repr(path))} is a file, not a folder")


#: Largest integer any counting flag takes (seeds, samples, top-k, workers ...): far below int64, so products of
#: two flags cannot overflow numpy's int64 columns. Job sizes have their own, smaller limits (specs.base).
MAX_FLAG_INT = 2**31 - 1


def number(kind=int, lo=None, hi=None, lo_open=False, note=""):
    """An argparse type: a finite number of `kind` in [lo, hi] ((lo, hi] with lo_open), with a message naming the
    value and the rule; integers are capped at MAX_FLAG_INT when no `hi` is given; nan and inf are refused."""
    if hi is None and kind is int:
        hi = MAX_FLAG_INT

    def parse(text: str):
        shown = shorten(repr(text))
        try:
            v = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"{shown} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{shown} is not a finite number")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"{shorten(str(v))} must be {'>' if lo_open else '>='} {lo:,}{note}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"{shorten(str(v))} must be <= {hi:,}{note}")
        return v
    return parse


positive_int = number(int, lo=1)
nonneg_int = number(int, lo=0)
positive_float = number(float, lo=0, lo_open=True)
#: Job sizes, bounded as the specs bound them (one definition: simulator.specs.base).
devices_int = number(int, lo=1, hi=MAX_DEVICES)
degree_int = number(int, lo=1, hi=MAX_DEVICES)
stages_int = number(int, lo=1, hi=MAX_LAYERS)
batch_int = number(int, lo=1, hi=MAX_BATCH)
seq_len_int = number(int, lo=1, hi=MAX_SEQ_LEN)


def on_off(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "on", "yes"):
        return True
    if t in ("0", "false", "off", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{shorten(repr(text))} must be on or off")


def add_framework_flag(g) -> None:
    """--framework: the software stack (specs.stack)."""
    g.add_argument("--framework", help="framework preset (software stack: attention kernel, overlaps, recompute "
                                       "semantics, allocator; see `trainsim frameworks`) or YAML path (default "
                                       "megatron-core)")


def add_job_flags(p: argparse.ArgumentParser, layout: bool = True) -> None:
    """Flags naming the job (model, hardware, devices, batch) and, optionally, one layout."""
    g = p.add_argument_group("job")
    g.add_argument("--scenario", metavar="FILE", help="scenario YAML with the same keys as these flags (flags win)")
    g.add_argument("--model", help="model preset name (see `trainsim models`), YAML path, or Hugging Face config.json path")
    g.add_argument("--hardware", help="hardware profile name (see `trainsim profiles`) or YAML path")
    add_framework_flag(g)
    g.add_argument("--cuda-graphs", metavar="none|SCOPE[,SCOPE]",
                   help="CUDA graphs over the framework's: none, or scopes attn, mlp, moe_router, moe_preprocess, moe "
                        "(MoE block: only with a padded capacity factor), full_iteration (default: the framework's)")
    g.add_argument("--devices", type=devices_int, help="number of accelerators")
    g.add_argument("--global-batch", type=batch_int, help="sequences per optimizer step")
    g.add_argument("--seq-len", type=seq_len_int, help="tokens per sequence (default: the model's max_seq_len)")
    g.add_argument("--dtype", choices=["bf16", "fp16", "fp8", "int8", "fp32"], help="GEMM precision (default bf16)")
    g.add_argument("--devices-per-node", type=devices_int, help="override the profile's devices per node")
    g.add_argument("--memory-gb", type=positive_float, help="override the device memory (GB)")
    g.add_argument("--power-limit-w", type=positive_float,
                   help="board power limit (W) below the rated power: lowers the sustained clock and the FLOP/s "
                        "peaks by the rule of simulator/specs/power.py")
    g.add_argument("--clock-fraction", type=positive_float,
                   help="sustained / rated clock (0-1], when known: scales the FLOP/s peaks")
    add_moe_network_flags(p)
    if not layout:
        return
    l = p.add_argument_group("layout")
    l.add_argument("--tp", type=degree_int, help="tensor-parallel degree (default 1)")
    l.add_argument("--pp", type=stages_int, help="pipeline stages (default 1)")
    l.add_argument("--dp", type=degree_int, help="data-parallel degree (default: devices / (tp*pp*cp))")
    l.add_argument("--ep", type=degree_int, help="expert-parallel degree, carved out of dp (default 1)")
    l.add_argument("--cp", type=degree_int, help="context-parallel degree (default 1)")
    l.add_argument("--vpp", type=stages_int, help="virtual pipeline stages per rank (default 1)")
    l.add_argument("--zero", type=int, choices=[0, 1, 2, 3], help="ZeRO stage; 3 = FSDP (default 1)")
    l.add_argument("--zero3-unit", choices=["layer", "tensor"],
                   help="ZeRO-3 gather unit: layer (FSDP) or tensor (DeepSpeed ZeRO-3 of 2021); default: the "
                        "framework's")
    l.add_argument("--sequence-parallel", type=on_off, metavar="on|off", help="Megatron SP (default on)")
    l.add_argument("--recompute", choices=["none", "selective", "full"], help="activation recompute (default selective)")
    l.add_argument("--micro-batch", type=batch_int, help="sequences per micro-batch (default 1)")
    l.add_argument("--schedule", choices=["gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "zb-v"],
                   help="pipeline schedule (dualpipe: DeepSeek-V3 bidirectional, even pp; zb-v: zero-bubble V)")
    l.add_argument("--placement", help="rank order, innermost first (default tp-cp-ep-dp-pp)")
    l.add_argument("--tp-comm-overlap", type=on_off, metavar="on|off",
                   help="overlap TP collectives with GEMMs (default: the framework's)")
    l.add_argument("--ep-comm-overlap", type=on_off, metavar="on|off",
                   help="hide MoE all-to-alls behind another micro-batch's compute (Megatron-Core; ideal overlap; "
                        "default: the framework's)")
    l.add_argument("--overlap-grad-reduce", type=on_off, metavar="on|off",
                   help="overlap the DP gradient reduction with the backward (default: the framework's)")
    l.add_argument("--flash-attention", type=on_off, metavar="on|off",
                   help="fused attention kernel (default: the framework's kernel)")
    l.add_argument("--moe-dispatch", choices=["flat", "hierarchical", "node-limited"],
                   help="MoE token dispatch: flat all-to-all (default), hierarchical (DeepSpeed-MoE/Tutel 2DH) or "
                        "node-limited (DeepEP: one copy per node, NVLink forward)")
    l.add_argument("--moe-max-nodes", type=positive_int, metavar="M",
                   help="node-limited routing: at most M nodes per token (DeepSeek-V3: 4)")
    l.add_argument("--dp-compression", choices=["none", "onebit"],
                   help="gradient compression: onebit = 1-bit Adam/LAMB after a warm-up (needs --zero 0)")
    l.add_argument("--onebit-warmup", type=number(float, 0.0, 1.0), metavar="FRACTION", dest="onebit_warmup_fraction",
                   help="share of the steps 1-bit Adam runs uncompressed (default 0.15)")
    l.add_argument("--local-sgd-tau", type=positive_int, metavar="TAU",
                   help="local SGD (CO2): inner steps per overlapped outer all-reduce (default 1 = synchronous)")
    add_offload_flags(p)


def parse_routing(text: str) -> dict:
    """--moe-routing MODEL[:SKEW]: balanced, zipf:1.0 (popularity exponent), dirichlet:0.3 (concentration)."""
    model, _, skew = text.partition(":")
    if model not in ("balanced", "zipf", "dirichlet"):
        raise argparse.ArgumentTypeError(f"'{text}': the model must be balanced, zipf:SKEW or dirichlet:CONCENTRATION")
    out = {"model": model}
    if skew:
        try:
            out["skew"] = float(skew)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': '{skew}' is not a number") from None
    return out


def add_moe_network_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the MoE routing and the network conditions (job-level: the same for every layout)."""
    g = p.add_argument_group("MoE routing and network")
    g.add_argument("--moe-routing", type=parse_routing, metavar="MODEL[:SKEW]",
                   help="expert popularity: balanced (top-k noise only), zipf:SKEW, dirichlet:CONCENTRATION "
                        "(default: every expert rank gets exactly the mean)")
    g.add_argument("--moe-imbalance", type=number(float, 1.0), metavar="MAX_OVER_MEAN",
                   help="measured busiest-rank tokens over the mean (overrides --moe-routing's model)")
    g.add_argument("--moe-capacity-factor", type=positive_float, metavar="CF",
                   help="expert capacity factor: overflow dropped, buffers padded to capacity (DeepSpeed, GShard)")
    g.add_argument("--background-occupancy", type=number(float, 0.0, 0.999), metavar="FRACTION",
                   help="share of the scale-out tiers another job's traffic occupies (default 0)")
    g.add_argument("--all-to-all-latency", choices=["per-tier", "per-peer"],
                   help="all-to-all latency: one alpha per tier (default) or per peer message")


def routing_keys(args: argparse.Namespace, keys: dict) -> None:
    """Merge --moe-routing/--moe-imbalance/--moe-capacity-factor into keys['moe_routing'] (a RoutingSpec)."""
    from ..specs.loading import validate_spec
    from ..specs.routing import RoutingSpec
    over = dict(getattr(args, "moe_routing", None) or {})
    if getattr(args, "moe_imbalance", None) is not None:
        over["max_over_mean"] = args.moe_imbalance
    if getattr(args, "moe_capacity_factor", None) is not None:
        over["capacity_factor"] = args.moe_capacity_factor
    if not over:
        return
    base = keys.get("moe_routing")
    data = base.model_dump() if base is not None else {}
    data.update(over)
    keys["moe_routing"] = validate_spec(RoutingSpec, data, "--moe-routing")


def add_offload_flags(p: argparse.ArgumentParser) -> None:
    """The offload choices of one layout (ZeRO-Offload / ZeRO-Infinity; docs/plan.md)."""
    o = p.add_argument_group("offload (memory beyond the device)")
    o.add_argument("--offload-optimizer", choices=["none", "cpu", "nvme"],
                   help="optimizer state + fp32 gradients on the host with Adam on the CPU, or the state on NVMe "
                        "(default none; needs zero >= 2 with data parallelism)")
    o.add_argument("--offload-params", choices=["none", "cpu", "nvme"],
                   help="fp16 parameter partitions on the host or NVMe, fetched layer by layer (default none; "
                        "needs zero 3 with data parallelism)")
    o.add_argument("--offload-activations", choices=["none", "cpu"],
                   help="activation checkpoints in host memory (default none)")
    o.add_argument("--offload-delayed-update", type=on_off, metavar="on|off",
                   help="ZeRO-Offload's delayed parameter update: the CPU step overlaps the next step (default off)")


FLAG_KEYS = ("model", "hardware", "framework", "devices", "global_batch", "seq_len", "dtype", "tp", "pp", "dp", "ep",
             "cp", "vpp", "zero", "zero3_unit", "sequence_parallel", "recompute", "micro_batch", "schedule",
             "placement", "tp_comm_overlap", "ep_comm_overlap", "overlap_grad_reduce", "flash_attention",
             "offload_optimizer", "offload_params", "offload_activations", "offload_delayed_update", "moe_dispatch",
             "moe_max_nodes", "dp_compression", "onebit_warmup_fraction", "local_sgd_tau", "background_occupancy",
             "all_to_all_latency", "cuda_graphs")


def scenario_keys(args: argparse.Namespace) -> dict:
    """Merge the scenario file (if any) with the flags; flags win. Returns flat keys."""
    from ..specs.scenario import read_scenario_file

    keys = read_scenario_file(args.scenario) if getattr(args, "scenario", None) else {}
    for k in FLAG_KEYS:
        v = getattr(args, k, None)
        if v is not None:
            keys[k] = v
    routing_keys(args, keys)
    over = dict(keys.pop("hardware_overrides", {}) or {})
    if getattr(args, "devices_per_node", None):
        over["devices_per_node"] = args.devices_per_node
    if getattr(args, "memory_gb", None):
        over["memory_gb"] = args.memory_gb
    for k in ("power_limit_w", "clock_fraction"):
        if getattr(args, k, None):
            over[k] = getattr(args, k)
    if over:
        keys["hardware_overrides"] = over
    missing = [f"--{k.replace('_', '-')}" for k in ("model", "hardware", "devices", "global_batch") if k not in keys]
    if missing:
        raise SpecError(f"missing required input(s): {', '.join(missing)} (give them as flags or in --scenario)")
    return keys


def build_scenario(args: argparse.Namespace):
    from ..specs.scenario import Scenario
    return Scenario.build(**scenario_keys(args))


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dict -> flat dict with dotted keys (for CSV)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = ";".join(str(x) for x in v)
        else:
            out[key] = v
    return out
