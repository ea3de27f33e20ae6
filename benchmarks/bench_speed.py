"""Speed of trainsim (issue #13): every figure of the issue's "Done when", in one command, next to its target.

    python benchmarks/bench_speed.py [--quick] [--only NAME[,NAME...]] [--json out.json]

Figures (NAME in brackets), each the median of several runs with min and max:
- [search]   `trainsim search` GPT-3 175B on 1,024 A100-80GB, global batch 1536, seq 2048: whole process
- [simulate] `trainsim simulate` GPT-3 175B on 12,288 A100-80GB, tp 8 pp 8 dp 192, mb 1, global batch 6144
             (MegaScale's scale and batch, Jiang et al. 2024, Table 2), `--trace` to a temporary folder: whole process
- [analytic] analytic engine on 1,000,000 GPT-3 layouts (benchmarks/bench_analytic.py's table), each run in a
             fresh process with OMP_NUM_THREADS=1: warm layouts/s per core, first call / warm median, peak RSS of
             the process after its first 1M-layout evaluation (resource.getrusage, inside that process)
             and, in one more fresh process, after an evaluation that keeps only the columns a ranking needs
             (evaluate(columns=RANKING_COLUMNS): the other columns dropped block by block)
- [sweep]    a 128-point sweep (4 models x 2 profiles x 4 device counts x 2 batches x 2 sequence lengths, 32 chunks
             of 4): wall time of `sweep()` with 1 and with 2 local workers, each in a fresh process
             and, in the same rounds, the machine's own 1 / 2 process ratio on pure-Python work (a control: on a
             shared machine the other sessions' load caps what 2 workers can gain)
- [dask]     the same 32 chunks on 2 local spawn processes and on a 2-worker Dask LocalCluster, one chunk at a
             time, in turn: the time each chunk takes inside its worker (wall, and CPU of its thread), Dask / local
             chunk by chunk, and its minor page faults; the cluster the sweep runner starts (`--dask-scheduler
             local:2`, without Dask's MALLOC_TRIM_THRESHOLD_), then one with Dask's defaults
- [validate] `trainsim validate published_runs.csv`: whole process, with the kernel-surface cache written, and
             with an empty one (TRAINSIM_CACHE_DIR a fresh folder each run)
- [imports]  python -X importtime: `import simulator.cli`, each verb module on top of it, and the imports made
             while running estimate, search, simulate and validate (self time summed per top-level package)

Whole-process figures are wall seconds from start to exit of `python -m simulator ...` (same as `trainsim ...`);
their CPU seconds (user + sys of the child) are printed too, as they move less when the machine is busy. The
tree measured is this checkout, or --tree DIR (its root is put first on PYTHONPATH of every child), so that a
baseline and a change can be measured in one session. --quick runs fewer repeats (about 1.5 minutes on a busy
2-core machine); the full run took 3 to 4.5 minutes there.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TREE = ROOT   # the checkout whose `simulator` is measured (--tree); set once in main()

JOB = ["--model", "gpt3-175b", "--hardware", "a100-sxm4-80gb", "--seq-len", "2048"]
SEARCH = ["search", *JOB, "--devices", "1024", "--global-batch", "1536"]
SIMULATE = ["simulate", *JOB, "--devices", "12288", "--global-batch", "6144", "--tp", "8", "--pp", "8",
            "--micro-batch", "1"]
SWEEP_SPEC = {"models": ["llama2-7b", "llama2-13b", "llama3-8b", "llama2-70b"],
              "hardware": ["a100-sxm4-80gb", "h100-sxm5-80gb"], "devices": [8, 16, 32, 64],
              "global_batch": [256, 512], "seq_len": [2048, 4096], "chunk_size": 4, "format": "parquet",
              "output": "unused"}
IMPORT_COMMANDS = {
    "estimate": ["estimate", *JOB, "--devices", "1024", "--global-batch", "1536", "--tp", "8", "--pp", "8"],
    "search": SEARCH, "simulate": SIMULATE, "validate": ["validate", "RUNS"]}
FALLBACK_VERBS = ("estimate", "simulate", "search", "compare", "plan", "sweep", "validate", "calibrate", "catalog")

#: name -> (label, unit, comparison, target); the issue's "Done when"
TARGETS = {
    "search_s": ("trainsim search, 1,024 A100 (whole process)", "s", "<", 0.7),
    "simulate_s": ("trainsim simulate --trace, 12,288 devices (whole process)", "s", "<", 0.6),
    "layouts_per_s": ("analytic engine, warm, per core", "layouts/s", ">=", 1.5e6),
    "first_call_ratio": ("analytic first call in a fresh process / warm", "x", "<=", 1.5),
    "peak_rss_mb": ("peak RSS of a 1M-layout evaluation (process)", "MB", "<=", 300.0),
    "sweep_speedup": ("sweep 128 points: 1 worker / 2 workers", "x", ">=", 1.7),
    "dask_chunk_ratio": ("per chunk: Dask worker (sweep's cluster) / local process", "x", "<=", 1.3),
    "validate_s": ("trainsim validate published runs (whole process)", "s", "<", 0.6),
    "import_cli_s": ("import simulator.cli (-X importtime)", "s", None, None),
}


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------

def child_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TREE), env["PYTHONPATH"]]) if env.get("PYTHONPATH") else str(TREE)
    env.update(extra)
    return env


def summary(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "runs": xs}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    try:
        import pandas
        pd_version = pandas.__version__
    except ImportError:
        pd_version = "absent"
    try:
        import yaml
        cyaml = bool(getattr(yaml, "__with_libyaml__", False))
    except ImportError:
        cyaml = False
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": numpy.__version__,
            "pandas": pd_version, "libyaml": cyaml, "platform": platform.platform(),
            "load_avg_start": [round(x, 2) for x in os.getloadavg()],
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds")}


def tree_version() -> str:
    """`git describe` of the measured checkout (commit, and '-dirty' with uncommitted changes)."""
    r = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=TREE)
    return r.stdout.strip() or "not a git checkout"


def run_process(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one whole process; raises with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env or child_env(),
                       cwd=TREE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} exited {r.returncode}: {r.stderr.strip()[-600:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def json_child(code: str, *args: str, env: dict | None = None, timeout: int = 300):
    """Run `python -c code args` and return the JSON object printed on its last stdout line."""
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=TREE,
                       env=env or child_env(), timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"child exited {r.returncode}: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def whole_process(argv: list[str], repeats: int) -> dict:
    walls, cpus = [], []
    run_process([sys.executable, "-m", "simulator", *argv])   # warm the OS file cache (not counted)
    for _ in range(repeats):
        w, c = run_process([sys.executable, "-m", "simulator", *argv])
        walls.append(w)
        cpus.append(c)
    return {"wall": summary(walls), "cpu": summary(cpus)}


def runs_csv() -> Path:
    for base in (TREE, ROOT):
        for p in (base / "benchmarks" / "data", base.parent / "shared" / "data", base.parent.parent / "shared" / "data"):
            if (p / "published_runs.csv").exists():
                return p / "published_runs.csv"
    raise FileNotFoundError("published_runs.csv: not in benchmarks/data/ nor ../shared/data/ (use --runs)")


# ---------------------------------------------------------------------------------------------------------------
# the figures
# ---------------------------------------------------------------------------------------------------------------

def bench_search(reps: int, _args) -> dict:
    r = whole_process(SEARCH, reps)
    return {"search_s": r["wall"], "search_cpu_s": r["cpu"]}


def bench_simulate(reps: int, _args) -> dict:
    with tempfile.TemporaryDirectory(prefix="trainsim-bench-") as d:
        r = whole_process(SIMULATE + ["--trace", str(Path(d) / "step.json")], reps)
    return {"simulate_s": r["wall"], "simulate_cpu_s": r["cpu"]}


def bench_validate(reps: int, args) -> dict:
    """Warm (the per-user kernel-surface cache written, as after a first run) and cold (an empty cache folder
    each run: the surfaces are fitted again, as on a first run after an install or an upgrade)."""
    argv = ["validate", str(args.runs or runs_csv())]
    r = whole_process(argv, reps)
    walls, cpus = [], []
    for _ in range(max(2, reps // 2)):
        with tempfile.TemporaryDirectory(prefix="trainsim-cache-") as d:
            w, c = run_process([sys.executable, "-m", "simulator", *argv], env=child_env(TRAINSIM_CACHE_DIR=d))
        walls.append(w)
        cpus.append(c)
    return {"validate_s": r["wall"], "validate_cpu_s": r["cpu"], "validate_cold_s": summary(walls),
            "validate_cold_cpu_s": summary(cpus)}


ANALYTIC_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from bench_analytic import distinct_layouts
try:                                    # the engine's home since issue 9; older trees: analytic.step
    from simulator.analytic.compose import evaluate
    from simulator.specs.job import Job
except ImportError:
    from simulator.analytic.step import Job, evaluate
from simulator.specs.loading import load_hardware, load_model
from simulator.specs.training import TrainingSpec
n, repeats = int(sys.argv[2]), int(sys.argv[3])
job = Job(model=load_model("gpt3-175b"), hardware=load_hardware("a100-sxm4-80gb"),
          training=TrainingSpec(seq_len=2048, global_batch=1536), num_devices=1024)
table, _ = distinct_layouts(n)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
base = rss()
def timed():
    c0, t0 = time.process_time(), time.perf_counter()
    out = evaluate(job, table)
    return time.perf_counter() - t0, time.process_time() - c0
first, first_cpu = timed()
peak = rss()
warm, warm_cpu = zip(*(timed() for _ in range(repeats)))
print(json.dumps({"first_s": first, "first_cpu_s": first_cpu, "warm_s": warm, "warm_cpu_s": warm_cpu,
                  "peak_rss_mb": peak, "base_rss_mb": base, "n": n}))
"""


#: The columns a caller that ranks layouts needs (evaluate(columns=...) keeps only these; issue #13's streamed peak).
RANKING_COLUMNS = ("step_time_s", "tokens_per_s", "mfu", "mem_total_bytes", "fits", "reasons")

RSS_COLUMNS_CHILD = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from bench_analytic import distinct_layouts, gpt3_job
from simulator.analytic.compose import evaluate
job = gpt3_job()
table, _ = distinct_layouts(int(sys.argv[2]))
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
base = rss()
out = evaluate(job, table, columns=json.loads(sys.argv[3]))
print(json.dumps({"peak_rss_mb": rss(), "base_rss_mb": base, "columns": list(out)}))
"""


def bench_analytic(reps: int, args) -> dict:
    """Each fresh process: one first call, then `reps` warm calls on the same 1M-row table."""
    procs = 2 if args.quick else 3
    env = child_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rates, cpu_rates, ratios, cpu_ratios, peaks, bases = [], [], [], [], [], []
    for _ in range(procs):
        r = json_child(ANALYTIC_CHILD, str(HERE), str(args.layouts), str(reps), env=env)
        rates += [r["n"] / w for w in r["warm_s"]]
        cpu_rates += [r["n"] / w for w in r["warm_cpu_s"]]
        ratios.append(r["first_s"] / statistics.median(r["warm_s"]))
        cpu_ratios.append(r["first_cpu_s"] / statistics.median(r["warm_cpu_s"]))
        peaks.append(r["peak_rss_mb"])
        bases.append(r["base_rss_mb"])
    res = {"layouts_per_s": summary(rates), "layouts_per_cpu_s": summary(cpu_rates),
           "first_call_ratio": summary(ratios), "first_call_cpu_ratio": summary(cpu_ratios),
           "peak_rss_mb": summary(peaks), "rss_before_evaluate_mb": summary(bases)}
    try:                                   # trees without evaluate(columns=...) have no such figure
        r = json_child(RSS_COLUMNS_CHILD, str(HERE), str(args.layouts), json.dumps(RANKING_COLUMNS), env=env)
        res["peak_rss_ranking_mb"] = summary([r["peak_rss_mb"]])
    except RuntimeError:
        pass
    return res


SWEEP_CHILD = r"""
import json, resource, sys, time
from simulator.planning.sweep import sweep
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
spec = json.loads(sys.argv[1])
c0, t0 = cpu(), time.perf_counter()
res = sweep(spec, output=sys.argv[2], workers=int(sys.argv[3]))
print(json.dumps({"s": time.perf_counter() - t0, "cpu_s": cpu() - c0, "points": res.num_points,
                  "chunks": res.num_chunks, "executor": res.executor}))
"""


#: The machine's own parallelism, measured beside the sweep: the same pure-Python work (no trainsim, no I/O) on a
#: pool of 1 and of 2 forked processes. On a shared machine the other sessions' load caps what 2 workers can gain;
#: sweep speed-up / this one is the sweep's parallel efficiency.
CONTROL_CHILD = r"""
import json, multiprocessing, sys, time
def burn(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
if __name__ == "__main__":
    w, n = int(sys.argv[1]), int(sys.argv[2])
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(w) as p:
        p.map(burn, [n] * 8)
    print(json.dumps({"s": time.perf_counter() - t0}))
"""


def bench_sweep(reps: int, _args) -> dict:
    """Wall time of sweep() (imports excluded, worker start-up included), fresh process and output each run; the
    machine's 1 / 2 process ratio on pure-Python work (CONTROL_CHILD) in the same rounds."""
    times, cpus = {1: [], 2: []}, {1: [], 2: []}
    control = {1: [], 2: []}
    info = {}
    with tempfile.TemporaryDirectory(prefix="trainsim-ctl-") as d:
        ctl = Path(d) / "control.py"            # a file: multiprocessing children import __main__ by path
        ctl.write_text(CONTROL_CHILD)
        for _ in range(reps):
            for w in (1, 2):
                with tempfile.TemporaryDirectory(prefix="trainsim-sweep-") as out:
                    info = json_child(SWEEP_CHILD, json.dumps(SWEEP_SPEC), str(Path(out) / "out"), str(w))
                times[w].append(info["s"])
                cpus[w].append(info["cpu_s"])
                r = subprocess.run([sys.executable, str(ctl), str(w), "1500000"], capture_output=True, text=True,
                                   timeout=300)
                control[w].append(json.loads(r.stdout.strip().splitlines()[-1])["s"])
    speed = [a / b for a, b in zip(times[1], times[2])]
    ctl_speed = [a / b for a, b in zip(control[1], control[2])]
    return {"sweep_1_worker_s": summary(times[1]), "sweep_2_workers_s": summary(times[2]),
            "sweep_1_worker_cpu_s": summary(cpus[1]), "sweep_2_workers_cpu_s": summary(cpus[2]),
            "sweep_speedup": summary(speed), "control_speedup": summary(ctl_speed),
            "sweep_efficiency": summary([a / b for a, b in zip(speed, ctl_speed)]),
            "sweep_points": info["points"], "sweep_chunks": info["chunks"]}


DASK_CHILD = r"""
import json, multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor


def timed_chunk(payload):
    import os, resource, time
    from simulator.planning.sweep import evaluate_chunk
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0, c0 = time.perf_counter(), time.thread_time()
    df = evaluate_chunk(payload)
    return (time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0, len(df),
            time.thread_time() - c0, os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))


if __name__ == "__main__":
    from simulator.planning.sweep import load_spec, plan
    rounds = int(sys.argv[2])
    pl = plan(load_spec(json.loads(sys.argv[1])))
    payloads = [pl.payload(i) for i in range(pl.num_chunks)] * rounds
    local, dask = [], []
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        # start both local workers now: LocalCluster sets MALLOC_TRIM_THRESHOLD_ in this process's environment,
        # which processes spawned after it would inherit (a local sweep has no such setting)
        list(ex.map(time.sleep, [0.5, 0.5]))
        from distributed import Client, LocalCluster
        if sys.argv[3] == "trainsim":          # the sweep runner's cluster (dask_scheduler="local:2")
            from simulator.planning.sweep.executors import local_dask_cluster
            cluster = local_dask_cluster(2, silence_logs=50)
        else:                                   # Dask's defaults
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=50)
        client = Client(cluster)
        # one chunk at a time, local and Dask in turn (alternating which goes first), so that both see the
        # same background load
        for i, p in enumerate(payloads):
            runs = [lambda: ex.submit(timed_chunk, p).result(),
                    lambda: client.submit(timed_chunk, p, pure=False).result()]
            order = (0, 1) if i % 2 == 0 else (1, 0)
            got = {k: runs[k]() for k in order}
            local.append(got[0])
            dask.append(got[1])
        client.close()
        cluster.close()
    print(json.dumps({"local": local, "dask": dask}))
"""


def bench_dask(reps: int, args) -> dict:
    """Per-chunk time inside the worker (the worker's imports excluded); Dask / local chunk by chunk. The Dask
    cluster is the sweep runner's (`dask_scheduler="local:2"`: executors.local_dask_cluster, without Dask's
    MALLOC_TRIM_THRESHOLD_) where the measured tree has it, and Dask's defaults too (`dask_default_*` figures)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise RuntimeError("dask.distributed is not installed (pip install 'trainsim[dask]')") from None
    has_runner = (TREE / "simulator" / "planning" / "sweep" / "executors.py").exists() and \
        "def local_dask_cluster" in (TREE / "simulator" / "planning" / "sweep" / "executors.py").read_text()
    res = {}
    for kind in (["trainsim"] if has_runner else []) + ["default"]:
        r = _dask_round(reps, kind)
        if kind == "default" and has_runner:
            r = {k.replace("dask_", "dask_default_", 1) if k.startswith("dask_") else f"default_{k}": v
                 for k, v in r.items()}
        res.update(r)
    return res


def _dask_round(reps: int, kind: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="trainsim-dask-") as d:
        script = Path(d) / "dask_child.py"        # a file, so that spawned workers can import __main__
        script.write_text(DASK_CHILD)
        r = subprocess.run([sys.executable, str(script), json.dumps(SWEEP_SPEC), str(reps), kind],
                           capture_output=True, text=True, cwd=d, env=child_env(), timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"dask child exited {r.returncode}: {r.stderr.strip()[-800:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    local = [c[0] for c in out["local"]]
    dask = [c[0] for c in out["dask"]]
    # each chunk ran once on each executor: the ratio is taken chunk by chunk (chunks differ in size)
    ratio = [d[0] / max(l[0], 1e-9) for d, l in zip(out["dask"], out["local"])]
    cpu_ratio = [d[3] / max(l[3], 1e-9) for d, l in zip(out["dask"], out["local"])]
    return {"local_chunk_s": summary(local), "dask_chunk_s": summary(dask),
            "dask_chunk_ratio": summary(ratio), "dask_chunk_cpu_ratio": summary(cpu_ratio),
            "dask_total_ratio": summary([sum(dask) / sum(local)]),
            "malloc_trim_threshold": {"local": sorted({c[4] for c in out["local"]}),
                                      "dask": sorted({c[4] for c in out["dask"]})},
            "local_chunk_page_faults": summary([float(c[1]) for c in out["local"]]),
            "dask_chunk_page_faults": summary([float(c[1]) for c in out["dask"]])}


# ---------------------------------------------------------------------------------------------------------------
# import time
# ---------------------------------------------------------------------------------------------------------------

def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(level, self us, cumulative us, module) of each `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        head, cum_us, name = line.split("|", 2)
        level = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((level, int(head.split(":")[1]), int(cum_us), name.strip()))
    return rows


def importtime(argv: list[str]) -> list[tuple[int, int, int, str]]:
    r = subprocess.run([sys.executable, "-X", "importtime", *argv], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=TREE, env=child_env())
    if r.returncode != 0:
        tail = [ln for ln in r.stderr.splitlines() if not ln.startswith("import time:")][-5:]
        raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {' '.join(tail)}")
    return parse_importtime(r.stderr)


def by_package(rows) -> dict[str, float]:
    """Seconds of import self time per top-level package (a package's own code, not what it imports)."""
    out: dict[str, float] = {}
    for _, self_us, _, name in rows:
        key = name.split(".")[0]
        out[key] = out.get(key, 0.0) + self_us / 1e6
    return out


def verb_modules() -> tuple[str, ...]:
    try:
        code = "import json, simulator.cli as c; print(json.dumps(list(c.VERB_MODULES)))"
        return tuple(json_child(code))
    except Exception:  # noqa: BLE001 - the list moved: measure the verbs we know
        return FALLBACK_VERBS


def import_profile(argv: list[str], reps: int, total) -> dict:
    """Median import seconds (`total(rows)`) of `python -X importtime ARGV` over `reps` runs, with the packages
    and the modules that take the most self time (medians)."""
    totals, packages, modules = [], [], []
    for _ in range(reps):
        rows = importtime(argv)
        totals.append(total(rows) / 1e6)
        packages.append(by_package(rows))
        modules.append({n: s / 1e6 for _, s, _, n in rows})

    def top(dicts: list[dict], k: int) -> dict:
        names = set().union(*dicts)
        med = {n: statistics.median(d.get(n, 0.0) for d in dicts) for n in names}
        return dict(sorted(med.items(), key=lambda kv: -kv[1])[:k])
    return {"total_s": summary(totals), "top_packages_s": top(packages, 8), "top_modules_s": top(modules, 5)}


def bench_imports(reps: int, args) -> dict:
    cli = import_profile(["-c", "import simulator.cli"], reps,
                         lambda rows: next(c for lv, _, c, n in rows if lv == 0 and n == "simulator.cli"))
    verbs = {}
    for v in verb_modules():
        mod = f"simulator.cli.{v}"
        try:
            rows = importtime(["-c", f"import simulator.cli; import {mod}"])
        except RuntimeError:
            continue
        verbs[v] = next((c for lv, _, c, n in rows if lv == 0 and n == mod), 0) / 1e6
    commands = {}
    for verb, argv in IMPORT_COMMANDS.items():
        argv = [str(args.runs or runs_csv()) if a == "RUNS" else a for a in argv]
        with tempfile.TemporaryDirectory(prefix="trainsim-imp-") as d:
            extra = ["--trace", str(Path(d) / "t.json")] if verb == "simulate" else []
            commands[verb] = import_profile(["-m", "simulator", *argv, *extra], reps,
                                            lambda rows: sum(c for lv, _, c, _ in rows if lv == 0))
    return {"import_cli_s": cli["total_s"], "import_cli": cli, "verb_module_import_s": verbs,
            "command_imports": commands}


BENCHES = {"search": bench_search, "simulate": bench_simulate, "analytic": bench_analytic, "sweep": bench_sweep,
           "dask": bench_dask, "validate": bench_validate, "imports": bench_imports}


# ---------------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------------

def fmt(v: float, unit: str) -> str:
    if unit == "layouts/s":
        return f"{v / 1e6:.2f}M"
    if unit == "MB":
        return f"{v:,.0f}"
    return f"{v:.3f}" if unit == "s" else f"{v:.2f}"


def verdict(v: float, op: str | None, target: float | None) -> str:
    if op is None:
        return ""
    ok = {"<": v < target, "<=": v <= target, ">=": v >= target}[op]
    return "meets" if ok else "misses"


def print_report(res: dict, errors: dict, mach: dict) -> None:
    print(f"machine: {mach['cpu']}, {mach['cores']} cores; python {mach['python']}, numpy {mach['numpy']}, "
          f"pandas {mach['pandas']}, libyaml {'yes' if mach['libyaml'] else 'no'}; {mach['platform']}")
    print(f"measured tree: {mach['tree']}; date {mach['date']}; load average at start {mach['load_avg_start']}, at end {mach['load_avg_end']} "
          "(1, 5, 15 min)")
    print()
    print(f"{'figure':58s} {'median':>9s} {'min':>9s} {'max':>9s} {'unit':>9s}  {'target':>10s}")
    for key, (label, unit, op, target) in TARGETS.items():
        if key not in res:
            continue
        s = res[key]
        tgt = f"{op} {fmt(target, unit)}" if op else ""
        print(f"{label:58s} {fmt(s['median'], unit):>9s} {fmt(s['min'], unit):>9s} {fmt(s['max'], unit):>9s} "
              f"{unit:>9s}  {tgt:>10s}  {verdict(s['median'], op, target)}")
    extra = [("search_cpu_s", "  search CPU (user+sys)", "s"), ("simulate_cpu_s", "  simulate CPU (user+sys)", "s"),
             ("validate_cpu_s", "  validate CPU (user+sys)", "s"),
             ("layouts_per_cpu_s", "  analytic engine, warm, per CPU second", "layouts/s"),
             ("first_call_cpu_ratio", "  analytic first call / warm, CPU time", "x"),
             ("rss_before_evaluate_mb", "  RSS before the evaluation (imports + table)", "MB"),
             ("peak_rss_ranking_mb", "  peak RSS, 1M layouts, ranking columns only (columns=)", "MB"),
             ("validate_cold_s", "  validate, empty kernel-surface cache (wall)", "s"),
             ("validate_cold_cpu_s", "  validate, empty kernel-surface cache (CPU)", "s"),
             ("control_speedup", "  machine control: pure Python, 1 / 2 processes", "x"),
             ("sweep_efficiency", "  sweep speed-up / machine control", "x"),
             ("sweep_1_worker_s", "  sweep, 1 worker", "s"), ("sweep_2_workers_s", "  sweep, 2 workers", "s"),
             ("sweep_1_worker_cpu_s", "  sweep, 1 worker: CPU of all processes", "s"),
             ("sweep_2_workers_cpu_s", "  sweep, 2 workers: CPU of all processes", "s"),
             ("local_chunk_s", "  chunk in a local process", "s"), ("dask_chunk_s", "  chunk in a Dask worker", "s"),
             ("dask_chunk_cpu_ratio", "  per chunk, CPU time of its thread: Dask / local", "x"),
             ("dask_total_ratio", "  all chunks, summed wall: Dask / local", "x"),
             ("local_chunk_page_faults", "  minor page faults per chunk, local", ""),
             ("dask_chunk_page_faults", "  minor page faults per chunk, Dask", ""),
             ("dask_default_chunk_ratio", "  per chunk, Dask's default LocalCluster / local", "x"),
             ("dask_default_chunk_cpu_ratio", "  ... CPU time of its thread", "x"),
             ("dask_default_chunk_page_faults", "  minor page faults per chunk, Dask defaults", "")]
    for key, label, unit in extra:
        if key in res:
            s = res[key]
            f = (lambda v: f"{v:,.0f}") if not unit else (lambda v: fmt(v, unit))
            print(f"{label:58s} {f(s['median']):>9s} {f(s['min']):>9s} {f(s['max']):>9s} {unit or 'count':>9s}")
    for key, what in (("malloc_trim_threshold", "Dask"), ("default_malloc_trim_threshold", "Dask defaults")):
        if key in res:
            m = res[key]
            print(f"  MALLOC_TRIM_THRESHOLD_ in the workers: local {', '.join(m['local'])}; {what} "
                  f"{', '.join(m['dask'])}")
    if "verb_module_import_s" in res:
        print()
        print("import of each verb module on top of simulator.cli (s): " + ", ".join(
            f"{k} {v:.3f}" for k, v in res["verb_module_import_s"].items()))
        profiles = [("import simulator.cli", res["import_cli"])] + [
            (f"trainsim {verb} (all imports)", c) for verb, c in res["command_imports"].items()]
        for what, c in profiles:
            pk = ", ".join(f"{k} {v:.3f}" for k, v in c["top_packages_s"].items())
            md = ", ".join(f"{k} {v:.3f}" for k, v in c["top_modules_s"].items())
            print(f"{what}: {c['total_s']['median']:.3f} s of imports (median)\n"
                  f"    self time by package (s): {pk}\n    slowest modules, self (s): {md}")
    for name, err in errors.items():
        print(f"{name}: FAILED: {err}")


def compile_tree(tree: Path) -> None:
    """Write the bytecode of the measured package (as pip does on install), so that every measured process loads
    .pyc files instead of compiling the sources: PYTHONDONTWRITEBYTECODE=1 in the environment would otherwise make
    each child compile all of simulator/ again (~0.15 s of CPU per process)."""
    import compileall
    compileall.compile_dir(str(tree / "simulator"), quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (about 1.5 minutes on 2 cores)")
    ap.add_argument("--only", metavar="NAME", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    ap.add_argument("--json", metavar="OUT.json", help="also write every figure, its runs and the machine here")
    ap.add_argument("--runs", type=Path, help="published-runs CSV (default benchmarks/data/ or ../shared/data/)")
    ap.add_argument("--tree", type=Path, default=ROOT,
                    help="measure the simulator of another checkout (default: this one), e.g. main for a baseline")
    ap.add_argument("--layouts", type=int, default=1_000_000, help="rows of the analytic table (default 1M)")
    ap.add_argument("--no-compile", action="store_true",
                    help="do not write the tree's bytecode first (an installed package has it; a checkout run "
                         "with PYTHONDONTWRITEBYTECODE=1 compiles every module in every process otherwise)")
    args = ap.parse_args()
    global TREE
    TREE = args.tree.resolve()
    if not (TREE / "simulator" / "__init__.py").exists():
        ap.error(f"--tree {args.tree}: no simulator/ package there")
    if not args.no_compile:
        compile_tree(TREE)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"--only {','.join(unknown)}: not one of {', '.join(BENCHES)}")
    reps = {"search": 3, "simulate": 3, "analytic": 2, "sweep": 1, "dask": 1, "validate": 3, "imports": 1} \
        if args.quick else {"search": 5, "simulate": 5, "analytic": 3, "sweep": 2, "dask": 1, "validate": 5,
                            "imports": 3}
    mach = machine()
    res, errors = {}, {}
    for n in names:
        t0 = time.perf_counter()
        print(f"[{n}] ...", file=sys.stderr, flush=True)
        try:
            res.update(BENCHES[n](reps[n], args))
        except Exception as err:  # noqa: BLE001 - one broken figure must not hide the others
            errors[n] = f"{type(err).__name__}: {err}"
        print(f"[{n}] {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    mach["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    mach["tree"] = tree_version()
    print_report(res, errors, mach)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": mach, "figures": res, "errors": errors,
                                               "targets": {k: {"op": v[2], "value": v[3]} for k, v in
                                                           TARGETS.items()}}, indent=2))


if __name__ == "__main__":
    main()
