"""Where a replayed step's time goes: one named account per representative rank (seconds by category of its
compute stream), the replay's log, and the attribution of the step along its critical path.

The categories are results.TIME_CATEGORIES (the one definition) without `overhead`, which the step adds once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..results import TIME_CATEGORIES

#: Time categories of a rank's compute stream; with the step's fixed overhead they partition the step.
CATEGORIES = tuple(c for c in TIME_CATEGORIES if c != "overhead")
#: Category of each kind of transfer.
COMM_CATEGORY = {"tp": "tp_comm", "cp": "cp_comm", "ep": "ep_comm", "pp": "pp_comm", "dp": "dp_comm",
                 "offload": "offload"}


class Account:
    """Seconds one rank's compute stream spent in each category (attributes named after CATEGORIES)."""

    __slots__ = CATEGORIES

    def __init__(self):
        for c in CATEGORIES:
            setattr(self, c, 0.0)

    def add(self, category: str, seconds: float) -> None:
        setattr(self, category, getattr(self, category) + seconds)

    def add_comm(self, kind: str, seconds: float) -> None:
        """Add a transfer of `kind` (tp, cp, ep, pp, dp, offload) to its category."""
        self.add(COMM_CATEGORY[kind], seconds)

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in CATEGORIES}


@dataclass
class ReplayLog:
    """What a replay records per representative rank (g, r) for the attribution."""

    accounts: dict = field(default_factory=dict)    # (g, r) -> Account
    op_log: dict = field(default_factory=dict)      # (g, r) -> [(start, end, input key or None, [(cat, t0, t1)])]
    send_log: dict = field(default_factory=dict)    # input key -> (g, r, op index, sent at, arrived at)
    ops_busy: dict = field(default_factory=dict)    # (g, r) -> seconds of pipeline ops
    ops_end: dict = field(default_factory=dict)     # (g, r) -> when its last pipeline op ended
    done_time: dict = field(default_factory=dict)   # (g, r) -> when it reached the step's barrier
    end_time: dict = field(default_factory=dict)    # (g, r) -> when it finished its step (before overhead)
    tails: dict = field(default_factory=dict)       # (g, r) -> [(category, start, end)] after its last op


def explain_waits(log: ReplayLog, g: int, r: int, idx: int, lo: float, out: dict) -> None:
    """Walk the chain of ops that ends with op `idx` of rank (g, r) back to time `lo`, adding to `out` the
    waits on it that are not computation: transfers in flight between stages (pp_comm) and waits for
    parameter gathers (dp_comm). At each op the chain continues with what started it: its input, when that
    arrived after the rank's previous op ended, else the previous op."""
    ops = log.op_log
    while idx >= 0:
        start, end, dep, waits = ops[(g, r)][idx]
        if end <= lo:
            return
        for cat, a, b in waits:
            if b > lo:
                out[cat] = out.get(cat, 0.0) + b - max(a, lo)
        if start <= lo:
            return
        prev_end = ops[(g, r)][idx - 1][1] if idx > 0 else 0.0
        if dep is not None:
            sg, sr, sidx, t_sent, t_arr = log.send_log[dep]
            if t_arr > prev_end:
                if t_arr > max(t_sent, lo):
                    out["pp_comm"] = out.get("pp_comm", 0.0) + t_arr - max(t_sent, lo)
                g, r, idx = sg, sr, sidx
                continue
        idx -= 1


def _moved_to_communication(log: ReplayLog, pace: tuple, t_pipe: float) -> dict:
    """Idle time of the pacing rank that the chains it waited for spent on transfers and gathers."""
    moved = {}
    ops = log.op_log[pace]
    for i, (start, end, dep, waits) in enumerate(ops):
        free = ops[i - 1][1] if i else 0.0
        if dep is not None and start > free:
            sg, sr, sidx, t_sent, t_arr = log.send_log[dep]
            if t_sent > free:
                explain_waits(log, sg, sr, sidx, free, moved)
    ops_end = log.ops_end
    last = sorted(ops_end, key=lambda k: (-ops_end[k], k))[0]
    if t_pipe > ops_end[pace]:
        explain_waits(log, last[0], last[1], len(log.op_log[last]) - 1, ops_end[pace], moved)
    return moved


def critical_path_breakdown(log: ReplayLog, overhead_s: float) -> tuple[tuple, dict]:
    """The step time split by category, and the pacing rank (the one with the most pipeline work): its passes and
    waits up to the end of the pipeline, its waits split into what the ops it waited for spent on transfers and
    parameter gathers (pp_comm, dp_comm) and the rest (bubble: other stages computing); after the pipeline, up to
    the barrier (gradient norm, before the optimizer) the tail of the rank that reached it last (its exposed
    gradient reduction), after it the tail of the rank that finishes the step last; plus the fixed overhead."""
    ops_s, end_s, ops_end = log.ops_busy, log.end_time, log.ops_end
    pace = sorted(ops_s, key=lambda k: (-ops_s[k], k))[0]
    t_pipe = max(ops_end.values())
    t_end = max(end_s.values())
    acct = log.accounts[pace].as_dict()
    for cat, t0, t1 in log.tails[pace]:
        acct[cat] -= t1 - t0
    if t_pipe > ops_end[pace]:
        acct["bubble"] += t_pipe - ops_end[pace]
    for cat, v in _moved_to_communication(log, pace, t_pipe).items():
        acct[cat] += v
        acct["bubble"] -= v
    done = log.done_time
    t_barrier = max(done.values())
    tol = 1e-12 * max(1.0, t_end)
    key = lambda times: (lambda k: (-round(times[k] / tol), -round(ops_end[k] / tol), k))
    last_in = sorted(done, key=key(done))[0]
    crit = sorted(end_s, key=key(end_s))[0]
    for rank, lo_, hi_ in ((last_in, t_pipe, t_barrier), (crit, t_barrier, t_end)):
        for cat, t0, t1 in log.tails[rank]:
            lo, hi = max(t0, lo_), min(t1, hi_)
            if hi > lo:
                acct[cat] += hi - lo
    acct["overhead"] = float(overhead_s)
    return pace, acct
