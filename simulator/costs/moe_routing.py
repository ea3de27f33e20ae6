"""MoE routing imbalance: the busiest expert rank's tokens, its all-to-all volume, capacity padding and dropping.

With expert parallelism each EP rank holds E/ep experts and waits for the slowest one: the MoE layer's expert
GEMMs and the all-to-all take as long as the busiest rank needs (the straggler effect, Hecate arXiv 2502.02581
sec. 1-2: "the most loaded device decides the MoE layer's latency"). Everything here is expressed through
max_over_mean = (token copies routed to the busiest rank) / (mean over ranks), 1 for perfect balance.

Conventions: `tokens` is the number of tokens one EP rank feeds into the layer (its micro-batch share), so the
EP group routes ep x tokens x top_k token copies in total; experts are placed in contiguous blocks (expert e on
rank e // (E/ep), Megatron-Core and DeepSpeed); all functions broadcast over numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..special import special_ufunc
from ..specs.routing import RoutingSpec

_GRID = np.linspace(-12.0, 12.0, 4801)


def expected_max_std_normal(n):
    """E[max of n independent standard normals] (0 for n = 1; 1/sqrt(pi) for 2; 3/(2 sqrt(pi)) for 3).

    Source: order statistics of the normal distribution, E[max] = integral of x n phi(x) Phi(x)^(n-1) dx
    (David & Nagaraja, "Order Statistics", 3rd ed., sec. 3.2), evaluated on a fine grid."""
    n = np.asarray(n, dtype=float)
    phi = np.exp(-0.5 * _GRID ** 2) / np.sqrt(2.0 * np.pi)
    ndtr = special_ufunc("ndtr")          # scipy loads only where routing imbalance is costed
    cdf = ndtr(_GRID)
    flat = n.reshape(-1)
    out = np.array([np.trapezoid(_GRID * k * phi * cdf ** (k - 1.0), _GRID) for k in flat])
    return out.reshape(n.shape)


def balanced_rank_cv(num_experts, ep, tokens, top_k):
    """Coefficient of variation of one EP rank's routed token copies when every expert is equally popular.

    A token picks top_k distinct experts; the number that live on a given rank (E/ep of the E experts) is
    hypergeometric with mean k/ep and variance k (1/ep)(1 - 1/ep)(E - k)/(E - 1). Over the ep x T independent
    tokens of the EP group (T per rank): cv = sqrt((ep - 1)(E - k) / (ep T k (E - 1))).
    Source: hypergeometric variance (Feller, vol. I, sec. II.6); routing of independent tokens (GShard sec. 2.2)."""
    E, ep, T, k = (np.asarray(x, dtype=float) for x in (num_experts, ep, tokens, top_k))
    return np.sqrt((ep - 1.0) * (E - k) / (ep * T * k * np.maximum(E - 1.0, 1.0)))


def balanced_max_over_mean(num_experts, ep, tokens, top_k):
    """Expected busiest-rank load over the mean with balanced routing: 1 + cv e_n / sqrt(1 - 1/n), n = ep.

    The n rank loads sum to the fixed total T k, so they are the deviations of n exchangeable variables from
    their mean: X_i = Y_i - mean(Y) with var(X_i) = var(Y)(1 - 1/n); E[max X_i] = sd(Y) e_n (normal
    approximation of the multinomial/hypergeometric counts, good for T k / ep >> 1).
    Source: derived here from balanced_rank_cv and expected_max_std_normal."""
    n = np.asarray(ep, dtype=float)
    cv = balanced_rank_cv(num_experts, ep, tokens, top_k)
    corr = np.sqrt(np.where(n > 1, 1.0 - 1.0 / np.maximum(n, 1.0), 1.0))
    return 1.0 + np.where(n > 1, cv * expected_max_std_normal(n) / corr, 0.0)


def expert_popularity(num_experts: int, model: str, skew: float, rng=None, size=None):
    """Share of routing decisions each expert attracts (last axis sums to 1), most popular first for zipf.

    zipf: p_i proportional to (i + 1)^-skew; dirichlet: a draw of a symmetric Dirichlet(skew) per row of `size`.
    Source: Zipf-like expert popularity of token routing (LSH-MoE arXiv 2411.08446 sec. 3.1 cites Zipf's law
    for token frequencies); Dirichlet as the standard random-simplex model (numpy Generator.dirichlet)."""
    if model == "balanced":
        p = np.full(num_experts, 1.0 / num_experts)
    elif model == "zipf":
        w = (np.arange(num_experts) + 1.0) ** (-float(skew))
        p = w / w.sum()
    elif model == "dirichlet":
        if rng is None:
            raise SpecError("routing model 'dirichlet' needs a seeded numpy Generator")
        return rng.dirichlet(np.full(num_experts, float(skew)), size=size)
    else:
        raise SpecError(f"routing model '{model}' is not one of balanced, zipf, dirichlet")
    return p if size is None else np.broadcast_to(p, tuple(np.atleast_1d(size)) + (num_experts,)).copy()


def inclusion_probability(popularity, top_k: int):
    """Probability that a token routes one of its top_k copies to each expert (last axis sums to top_k, each <= 1).

    A token visits an expert at most once, so the shares k p_e are water-filled: pi_e = min(1, c p_e) with c
    chosen so that sum pi_e = k. Source: top-k selection of distinct experts (GShard sec. 2.2, Switch
    Transformer arXiv 2101.03961 sec. 2.1); the water-filling is this module's first-order model of it."""
    p = np.asarray(popularity, dtype=float)
    capped = np.zeros(p.shape, dtype=bool)
    for _ in range(int(top_k) + 1):
        free = np.where(capped, 0.0, p).sum(axis=-1, keepdims=True)
        c = (top_k - capped.sum(axis=-1, keepdims=True)) / np.maximum(free, 1e-300)
        capped = capped | (c * p >= 1.0)
    return np.where(capped, 1.0, c * p)


def rank_shares(expert_share, ep: int, placement=None):
    """Share of the routed token copies each of `ep` ranks receives (last axis), experts in contiguous blocks.

    `placement` (same shape as expert_share, a permutation on the last axis) lists which expert sits in each
    slot; default: expert e in slot e. Source: Megatron-Core / DeepSpeed expert placement (rank e // (E/ep))."""
    s = np.asarray(expert_share, dtype=float)
    E = s.shape[-1]
    if E % ep != 0:
        raise SpecError(f"num_experts ({E}) must be a multiple of ep ({ep})")
    if placement is not None:
        s = np.take_along_axis(s, np.asarray(placement), axis=-1)
    return s.reshape(s.shape[:-1] + (ep, E // ep)).sum(axis=-1)


def sampled_max_over_mean(num_experts: int, ep: int, tokens: float, top_k: int, model: str, skew: float,
                          rng, num_samples: int):
    """Busiest-rank load over the mean in `num_samples` draws (array): a random expert placement (and, for
    dirichlet, a popularity draw) per sample, then multinomial token noise on T ep k routed copies.

    Source: this module's routing model (expert_popularity, inclusion_probability, rank_shares); the
    multinomial over ranks treats the k copies of a token as independent (exact for k = 1)."""
    pop = expert_popularity(num_experts, model, skew, rng=rng, size=num_samples)
    share = inclusion_probability(pop, top_k) / top_k
    slots = rng.permuted(np.tile(np.arange(num_experts), (num_samples, 1)), axis=1)
    q = rank_shares(share, ep, slots)
    copies = int(round(tokens * ep * top_k))
    counts = rng.multinomial(copies, q / q.sum(axis=-1, keepdims=True))
    return counts.max(axis=-1) / (copies / ep)


def max_over_mean(spec: RoutingSpec, num_experts: int, ep: int, tokens: float, top_k: int) -> float:
    """Expected busiest-rank token copies over the mean for a routing spec (the input of the MoE costs).

    Explicit `max_over_mean` wins; balanced uses the closed form; zipf/dirichlet average seeded samples.
    Source: balanced_max_over_mean, sampled_max_over_mean."""
    if spec.max_over_mean is not None:
        return float(spec.max_over_mean)
    if ep <= 1:
        return 1.0
    if spec.model == "balanced" or (spec.model == "zipf" and spec.skew == 0.0):
        return float(balanced_max_over_mean(num_experts, ep, tokens, top_k))
    rng = np.random.default_rng(spec.seed)
    return float(sampled_max_over_mean(num_experts, ep, tokens, top_k, spec.model, spec.skew, rng,
                                       spec.num_samples).mean())


def sample_layer_step_imbalance(spec: RoutingSpec, rng, num_steps: int, num_layers: int, num_experts: int,
                                ep: int, tokens: float, top_k: int):
    """max_over_mean of every (step, layer) for the discrete-event engine: array [num_steps, num_layers].

    Each layer keeps its own popularity and expert placement for all steps (layers differ strongly: Hecate
    arXiv 2502.02581 Fig. 11, per-layer speed-ups 2.8-18.8x); each step adds fresh token noise. An explicit
    max_over_mean gives a constant array. Source: this module's routing model; seeded numpy Generator."""
    if spec.max_over_mean is not None or ep <= 1:
        return np.full((num_steps, num_layers), spec.max_over_mean or 1.0)
    model = "zipf" if spec.model == "balanced" else spec.model
    skew = 0.0 if spec.model == "balanced" else spec.skew
    pop = expert_popularity(num_experts, model, skew, rng=rng, size=num_layers)
    share = inclusion_probability(pop, top_k) / top_k
    slots = rng.permuted(np.tile(np.arange(num_experts), (num_layers, 1)), axis=1)
    q = rank_shares(share, ep, slots)
    q = q / q.sum(axis=-1, keepdims=True)
    copies = int(round(tokens * ep * top_k))
    counts = rng.multinomial(copies, np.broadcast_to(q, (num_steps, num_layers, ep)))
    return counts.max(axis=-1) / (copies / ep)


def expert_capacity_tokens(tokens, top_k, num_experts, capacity_factor, min_capacity=0):
    """Tokens one expert accepts from one rank's batch: max(min_capacity, ceil(capacity_factor x T k / E)).

    Source: DeepSpeed deepspeed/moe/sharded_moe.py `_capacity` (ceil(T / E x capacity_factor), with the factor
    doubled for top-2 gating, floored at min_capacity); GShard sec. 2.2, Switch Transformer sec. 2.2."""
    T, k, E = (np.asarray(x, dtype=float) for x in (tokens, top_k, num_experts))
    return np.maximum(float(min_capacity), np.ceil(capacity_factor * T * k / E - 1e-9))


def expected_overflow(mean_load, var_load, capacity):
    """E[max(0, X - C)] for a load X ~ Normal(mean, var): sd (phi(z) - z (1 - Phi(z))), z = (C - mean) / sd.

    Source: the normal loss function (partial expectation), e.g. Porteus, "Foundations of Stochastic Inventory
    Theory" (2002) sec. 1.3."""
    sd = np.sqrt(np.maximum(np.asarray(var_load, dtype=float), 1e-300))
    z = (np.asarray(capacity, dtype=float) - mean_load) / sd
    phi = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    ndtr = special_ufunc("ndtr")
    return sd * (phi - z * (1.0 - ndtr(z)))


def dropped_fraction(expert_share, tokens, top_k, capacity):
    """Expected fraction of the routed token copies dropped when each expert accepts `capacity` per rank batch.

    Expert e receives X_e ~ Binomial(T, pi_e) copies from one rank's T tokens (pi_e = top_k x its share of
    the copies, at most 1); the overflow over the capacity is dropped (GShard sec. 2.2, Switch sec. 2.2).
    Source: expected_overflow on the normal approximation of the binomial loads."""
    share = np.asarray(expert_share, dtype=float)
    T = np.asarray(tokens, dtype=float)[..., None]
    pi = np.minimum(1.0, top_k * share)
    over = expected_overflow(T * pi, T * pi * (1.0 - pi), np.asarray(capacity, dtype=float)[..., None])
    return over.sum(axis=-1) / (T[..., 0] * top_k)


def busiest_rank_gemm_tokens(tokens, top_k, max_over_mean, num_experts=None, capacity=None,
                             pad_to_capacity=True):
    """Rows of the busiest EP rank's expert GEMMs (all its local experts together), per micro-batch.

    Dropless: max_over_mean x T k. With a per-source capacity C (expert_capacity_tokens on one rank's batch),
    every source rank sends each expert a [C, h] slot, so a rank's E/ep experts receive ep x C rows each:
    E x C rows per rank, the same on every rank when padded (no straggler left: the cost moves into padding).
    Without padding the busiest rank runs min(dropless, E x C) rows.
    Source: DeepSpeed deepspeed/moe/sharded_moe.py MOELayer (dispatch tensor [E, C, h], all-to-all, expert
    GEMMs on [ep, E/ep, C, h]); GShard sec. 2.2."""
    dropless = np.asarray(max_over_mean, dtype=float) * tokens * top_k
    if capacity is None:
        return dropless
    full = float(num_experts) * np.asarray(capacity, dtype=float)
    return np.broadcast_to(full, np.broadcast(full, dropless).shape) if pad_to_capacity else np.minimum(dropless, full)


def busiest_rank_dispatch_bytes(tokens, top_k, hidden, bytes_per_element, max_over_mean, num_experts=None,
                                capacity=None, pad_to_capacity=True):
    """Bytes the busiest rank moves in one dispatch all-to-all, counted as collectives.all_to_all_time_s counts
    them (the total including the share that stays on the rank; the collective applies (n-1)/n).

    Dropless: a rank sends its own T k copies and receives max_over_mean x T k; the transfer takes the larger
    side, max(1, max_over_mean) x T k x h x bytes. Padded to capacity: every rank sends its whole [E, C, h]
    buffer, E x C x h x bytes. The combine all-to-all mirrors the dispatch.
    Source: Megatron-Core MoEAlltoAllTokenDispatcher (variable splits); DeepSpeed MOELayer (padded [E, C, h])."""
    per_copy = float(hidden) * bytes_per_element
    if capacity is not None and pad_to_capacity:
        return float(num_experts) * np.asarray(capacity, dtype=float) * per_copy
    load = np.maximum(1.0, np.asarray(max_over_mean, dtype=float)) * tokens * top_k
    if capacity is not None:
        load = np.minimum(load, float(num_experts) * np.asarray(capacity, dtype=float))
    return load * per_copy


@dataclass(frozen=True)
class MoeLoad:
    """How routing loads the busiest expert rank of every layout, relative to an even split (all 1.0 for
    `routing` None): `max_over_mean` (the routing model's expectation), `gemm_factor` (its expert GEMM rows over
    the mean T k), `dispatch_factor` (its all-to-all bytes over T k x h x bytes), `tokens` (T, tokens one EP rank
    routes per micro-batch) and `capacity` (per-source expert capacity, or None when dropless). The routed
    activations a rank stores scale like its GEMM rows (`gemm_factor`)."""

    max_over_mean: object
    gemm_factor: object
    dispatch_factor: object
    tokens: object
    capacity: object = None


def moe_load(routing: RoutingSpec | None, num_experts: int, top_k: int, ep, tokens) -> MoeLoad:
    """The MoeLoad of arrays of EP degrees and per-rank tokens T (one routing model for all rows). The expected
    max-over-mean is computed once per distinct (ep, T).

    Source: max_over_mean, expert_capacity_tokens, busiest_rank_gemm_tokens, busiest_rank_dispatch_bytes (above)."""
    ep_a, t_a = np.broadcast_arrays(np.asarray(ep, dtype=float), np.asarray(tokens, dtype=float))
    if routing is None:
        return MoeLoad(max_over_mean=1.0, gemm_factor=1.0, dispatch_factor=1.0, tokens=t_a)
    mom = np.ones(ep_a.shape)
    pairs = np.stack([ep_a.reshape(-1), t_a.reshape(-1)], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    vals = np.array([max_over_mean(routing, num_experts, int(e), float(t), top_k) for e, t in uniq])
    mom = vals[np.asarray(inv).reshape(-1)].reshape(ep_a.shape)
    gemm, disp, cap = load_factors(routing, num_experts, top_k, t_a, mom)
    return MoeLoad(max_over_mean=mom, gemm_factor=gemm, dispatch_factor=disp, tokens=t_a, capacity=cap)


def load_factors(routing: RoutingSpec, num_experts: int, top_k: int, tokens, max_over_mean):
    """(gemm_factor, dispatch_factor, capacity) of the busiest rank for given max-over-mean values (arrays
    broadcast: the discrete-event engine passes one value per (step, layer)); capacity None when dropless.

    Source: expert_capacity_tokens, busiest_rank_gemm_tokens, busiest_rank_dispatch_bytes (above)."""
    t_a = np.asarray(tokens, dtype=float)
    cap = None
    if routing.capacity_factor is not None:
        cap = expert_capacity_tokens(t_a, top_k, num_experts, routing.capacity_factor, routing.min_capacity)
    copies = t_a * top_k
    gemm = busiest_rank_gemm_tokens(t_a, top_k, max_over_mean, num_experts, cap, routing.pad_to_capacity) / copies
    disp = busiest_rank_dispatch_bytes(t_a, top_k, 1.0, 1.0, max_over_mean, num_experts, cap,
                                       routing.pad_to_capacity) / copies
    return gemm, disp, cap
