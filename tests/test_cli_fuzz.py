"""Property: whatever flags and small files a user gives, the CLI ends with exit 0, 2 or 3 and one message, never a
traceback or an internal error (issue 12: "a hypothesis test drives the CLI with generated flags and files").

Runs in-process (simulator.cli.main with argv) over generated argument lists for `estimate`, small `simulate`
jobs (scenario files, trace paths), `profiles` and `models`: preset names, aliases and garbage names; numbers that are huge, negative, nan, inf or not numbers;
model and hardware YAML files with out-of-range, non-finite, mistyped or unknown values, `extends:` files,
alias-heavy YAML and bytes that are not UTF-8. Derandomized, so that CI sees the same 100 examples each run;
TRAINSIM_FUZZ_EXAMPLES=5000 explores more locally (with a fresh seed each run).
"""
from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.specs.loading import HARDWARE_ALIASES, available_models, available_profiles

EXAMPLES = int(os.environ.get("TRAINSIM_FUZZ_EXAMPLES", "100"))
WORK = Path(tempfile.mkdtemp(prefix="trainsim-fuzz-"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
PRESETS = Path(__file__).resolve().parents[1] / "simulator" / "presets" / "models"
BASE_MODEL = yaml.safe_load((PRESETS / "llama3-8b.yaml").read_text())

SMALL_INTS = st.integers(min_value=-3, max_value=4100)
WILD_NUMBERS = st.one_of(
    SMALL_INTS.map(str),
    st.sampled_from([str(2**63), str(2**70), "99999999999999999999", "-1", "0", "1e400", "nan", "inf", "-inf",
                     ".inf", "", " ", "0x10", "1_000", "8.0", "1e3", "١٢", "NaN", "1" * 60]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
YAML_VALUES = st.one_of(
    SMALL_INTS, st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=20), st.lists(SMALL_INTS, max_size=3),
    st.dictionaries(st.text(max_size=5), SMALL_INTS, max_size=2))
MODEL_KEYS = [*BASE_MODEL, "num_kv_head", "moe", "mla", "hidden", "extends"]
HW_KEYS = ["name", "description", "devices_per_node", "device", "tiers", "efficiency", "vendor", "family",
           "notes", "devce"]


def _write(name: str, data: bytes) -> str:
    path = WORK / name
    path.write_bytes(data)
    return str(path)


@st.composite
def model_arg(draw) -> str:
    kind = draw(st.sampled_from(["preset"] * 5 + ["garbage", "file", "file", "raw"]))
    if kind == "preset":
        return draw(st.sampled_from(available_models()))
    if kind == "garbage":
        return draw(st.one_of(st.text(max_size=30), st.sampled_from(["", ".", "..", "../x", "/", "llama3-8",
                                                                     "LLAMA3-8B", "a" * 300, "/dev/null"])))
    if kind == "raw":
        raw = draw(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                             st.sampled_from([b"a: &a [1, *a]\n", b"[" * 100 + b"]" * 100, b"\xff\xfe\x00",
                                              b"x: &x [1,1,1,1,1,1,1,1,1,1]\ny: [*x,*x,*x,*x,*x,*x,*x,*x,*x]\n"])))
        return _write("raw.yaml", raw)
    data = dict(BASE_MODEL)
    for key in draw(st.lists(st.sampled_from(MODEL_KEYS), max_size=2)):
        data[key] = draw(YAML_VALUES)
    for key in draw(st.lists(st.sampled_from(list(BASE_MODEL)), max_size=2)):
        data.pop(key, None)
    return _write("model.yaml", yaml.safe_dump(data).encode())


@st.composite
def hardware_arg(draw) -> str:
    kind = draw(st.sampled_from(["preset"] * 3 + ["alias"] * 2 + ["garbage", "extends", "extends"]))
    if kind == "preset":
        return draw(st.sampled_from(available_profiles()))
    if kind == "alias":
        return draw(st.sampled_from(sorted(HARDWARE_ALIASES))).upper()
    if kind == "garbage":
        return draw(st.one_of(st.text(max_size=20), st.sampled_from(["", "h100-sxm", "../hardware_profiles/b200",
                                                                     "tpu-v4 ", "a" * 5000])))
    data = {"extends": draw(st.sampled_from(["h100", "tpu-v4", "mi300x", "nope", "hw.yaml"]))}
    for key in draw(st.lists(st.sampled_from(HW_KEYS), max_size=2)):
        data[key] = draw(YAML_VALUES)
    if draw(st.booleans()):
        data["device"] = {"memory_gb": draw(YAML_VALUES)}
    if draw(st.booleans()):
        data["tiers"] = {draw(st.sampled_from(["infiniband-ndr", "ici", "xgmi", "nvlink4", "bogus"])):
                         {"bandwidth_gb_per_s": draw(YAML_VALUES)}}
    return _write("hw.yaml", yaml.safe_dump(data).encode())


NUMBER_FLAGS = ["--devices", "--global-batch", "--seq-len", "--tp", "--pp", "--dp", "--ep", "--cp", "--vpp",
                "--micro-batch", "--devices-per-node", "--memory-gb", "--zero"]
CHOICE_FLAGS = {"--dtype": ["bf16", "fp16", "fp8", "int8", "fp32", "fp64"],
                "--recompute": ["none", "selective", "full", "half"],
                "--schedule": ["gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe"],
                "--zero3-unit": ["layer", "tensor", "tensors"], "--sequence-parallel": ["on", "off", "maybe"],
                "--placement": ["tp-cp-ep-dp-pp", "pp-dp-cp-tp", "tp-tp"], "--format": ["table", "json", "csv", "xml"]}
# The last value of each list is the invalid one.


def mostly(plausible, wild, odds: int = 8):
    """`plausible` values, and `wild` ones about once in `odds` draws: deep enough to reach the engine (exit 0/3)
    while every path still sees bad input."""
    return st.integers(0, odds - 1).flatmap(lambda i: wild if i == 0 else plausible)


@st.composite
def estimate_argv(draw) -> list[str]:
    """Half the examples are plausible throughout (presets, sane numbers, valid choices: they reach the engines
    and end in 0 or 3, or 2 from a cross-field rule); the other half put wild values anywhere."""
    wild = draw(st.booleans())

    def pick(plausible, bad, odds=4):
        return draw(mostly(plausible, bad, odds) if wild else plausible)

    argv = ["estimate"]
    if not wild or draw(st.integers(0, 19)):
        argv += ["--model", pick(st.sampled_from(available_models()), model_arg(), odds=2)]
    if not wild or draw(st.integers(0, 19)):
        names = st.sampled_from(available_profiles() + sorted(HARDWARE_ALIASES))
        argv += ["--hardware", pick(names, hardware_arg(), odds=2)]
    plausible = {"--devices": ["8", "16", "64", "1024"], "--global-batch": ["8", "64", "1536"],
                 "--seq-len": ["1024", "2048", "4096"]}
    for flag, values in plausible.items():
        if not wild or draw(st.integers(0, 19)):
            argv += [flag, pick(st.sampled_from(values), WILD_NUMBERS)]
    for flag in draw(st.lists(st.sampled_from(NUMBER_FLAGS[3:]), max_size=3, unique=True)):
        argv += [flag, pick(st.sampled_from(["1", "2", "4", "8"]), WILD_NUMBERS)]
    for flag in draw(st.lists(st.sampled_from(sorted(CHOICE_FLAGS)), max_size=3, unique=True)):
        good, bad = CHOICE_FLAGS[flag][:-1], CHOICE_FLAGS[flag][-1:]
        argv += [flag, pick(st.sampled_from(good), st.sampled_from(bad))]
    if wild and draw(st.integers(0, 9)) == 0:
        argv += [draw(st.sampled_from(["--glob", "--tp=", "-x", "--", "extra", "--help-me"]))]
    return argv


SCENARIO_KEYS = ["tp", "pp", "dp", "micro_batch", "recompute", "schedule", "zero", "seq_len", "global_batch", "tpp"]


@st.composite
def simulate_argv(draw) -> list[str]:
    """Small jobs (the replay stays fast) with scenario files and output paths, good and bad: --trace '' and a
    trace onto the command's own scenario file were silent or destructive once."""
    scenario = {"model": draw(st.sampled_from(["llama3-8b", "megatron-1.7b", "llama2-7b"])), "hardware": "h100"}
    for key in draw(st.lists(st.sampled_from(SCENARIO_KEYS), max_size=2, unique=True)):
        scenario[key] = draw(st.one_of(st.sampled_from([1, 2, "1f1b", "full"]), YAML_VALUES))
    sc = _write("scenario.yaml", yaml.safe_dump(scenario).encode())
    argv = ["simulate", "--scenario", sc, "--devices", draw(st.sampled_from(["8", "16"])),
            "--global-batch", draw(st.sampled_from(["8", "16"])), "--seq-len", "1024", "--format", "json"]
    if draw(st.booleans()):
        argv += ["--trace", draw(st.sampled_from(["", " ", str(WORK / "t.json"), str(WORK), sc, "t.txt",
                                                  str(WORK / "missing" / "t.json")]))]
    if draw(st.booleans()):
        argv += [draw(st.sampled_from(["--jitter", "--stragglers", "--straggler-slowdown", "--samples", "--seed"])),
                 draw(st.one_of(st.sampled_from(["0", "0.1", "2", "1"]), WILD_NUMBERS))]
    return argv


ANY_ARGV = st.one_of(
    estimate_argv(), estimate_argv(), estimate_argv(), estimate_argv(), simulate_argv(),
    st.tuples(st.sampled_from(["profiles", "models"]),
              st.sampled_from([[], ["--format", "json"], ["--format", "yaml"], ["--form", "json"]]))
    .map(lambda t: [t[0], *t[1]]),
    st.lists(st.text(max_size=10), max_size=4),
)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:            # --help / --version
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, derandomize="TRAINSIM_FUZZ_EXAMPLES" not in os.environ,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ANY_ARGV)
def test_cli_ends_in_0_2_or_3_with_one_message_and_no_traceback(argv):
    code, out, err = run_cli(argv)
    assert code in (0, 2, 3), (argv, code, err[-2000:])
    assert "Traceback" not in err and "Traceback" not in out, (argv, err[-2000:])
    if code == 2:
        assert err.startswith("error: ") and err.count("\nerror: ") == 0, (argv, err[:2000])
    assert len(err) < 25_000, (argv, len(err))


def test_the_fuzzer_reaches_every_exit_code():
    """The generated inputs are not all rejected at the first flag: a fixed sample of each kind."""
    ok = ["estimate", "--model", "llama3-8b", "--hardware", "H100", "--devices", "8", "--global-batch", "8",
          "--seq-len", "2048"]
    assert run_cli(ok)[0] == 0
    assert run_cli(ok + ["--memory-gb", "1"])[0] == 3
    assert run_cli(ok + ["--tp", "nan"])[0] == 2
