"""A runs-file row -> a Case: the job (model, hardware profile with the row's overrides, batch, devices), the
layout cells the row states (blank ones left open for the search), and the framework facts the schema has no
column for.

The software stack of a row is the framework preset of its `framework` column and year
(specs.frameworks_loading.framework_for_run): attention kernel, overlaps, recompute semantics, FSDP, loss buffers,
allocator, blank-field policy. No rule over the notes decides physics, except the documented override table
NOTE_OVERRIDES: a row whose notes state a setting that differs from its framework's usual one (TP comm overlap on,
EP all-to-all overlap on, no --overlap-grad-reduce, FlashAttention named under an unfused preset or its flag stated
absent under a fused one) overrides that flag, and the row reports every override it applied (`Case.overrides`).

vTrain files (Bang et al. 2023, arXiv 2312.12391; data README sec. 4): GPT models (4h GELU MLP, MHA, vocab
50257), fp16, full recompute, 1F1B without interleaving, no sequence parallelism, no FlashAttention (vTrain's
model uses Megatron's fused softmax), plain data parallelism (ZeRO 0) with the gradient all-reduce after the
backward pass (vTrain's `use_gradient_bucket` default false), on `a100-sxm4-80gb` with 8 GPUs per node and
800 Gb/s of scale-out per node (vTrain's `inter_node_bandwidth` default; 100 Gb/s per GPU). Row ids are
`vtrain-single-<n>` / `vtrain-multi-<n>` (n: 1-based data row), metric `step_time_s`.

Rows whose notes start with `UNUSABLE`, rows with an unknown hardware profile, malformed rows (named by line
and column) and rows whose stated layout does not fill their devices become skipped RowResults with the reason.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..errors import SpecError
from ..specs.base import MAX_NAME
from ..specs.framework import FrameworkSpec
from ..specs.frameworks_loading import framework_for_run
from ..specs.hardware import HardwareProfile
from ..specs.stack import framework_layout_values
from ..specs.loading import available_models, load_hardware, load_model, override_hardware
from ..specs.model import MLASpec, ModelSpec, MoESpec
from ..specs.routing import RoutingSpec
from ..specs.training import TrainingSpec
from .report import RowResult
from .schema import VTRAIN_SOURCE, RowError, detect_kind, parse_published_row, parse_vtrain_row, records


@dataclass(frozen=True)
class Case:
    """One row turned into a job whose blank layout fields are still open (None)."""

    id: str
    line: int
    source: str
    metric: str
    measured: float
    convention: Optional[str]
    peak_tflops_used: Optional[float]
    model: ModelSpec
    hardware: HardwareProfile
    training: TrainingSpec
    num_devices: int
    known: dict                 # layout field -> value or None (blank, to search)
    flash_attention: bool
    overlap_grad_reduce: bool
    tp_comm_overlap: bool
    convention_embedding: bool  # 6N conventions whose N counts the input embedding too
    assumptions: tuple = ()
    eval_sequences_per_step: float = 0.0   # forward-only evaluation inside the measured window, per step
    zero3_unit: str = "layer"              # ZeRO-3 gather unit of the row's framework (specs.layout)
    ep_comm_overlap: bool = False          # MoE all-to-alls hidden behind another micro-batch (specs.layout)
    dp_param_gather_overlap: bool = True   # ZeRO-1/2 parameter all-gather under the next forward (specs.layout)
    moe_dispatch: str = "flat"             # MoE token dispatch strategy (specs.layout.MoeDispatch)
    moe_max_nodes: Optional[int] = None    # node-limited routing: nodes a token may reach (None: every node)
    stage_layers: Optional[tuple] = None   # decoder layers per virtual pipeline stage (a stated pipeline layout)
    framework: Optional[FrameworkSpec] = None   # the row's preset (framework_for_run); None: the default preset
    overrides: tuple = ()                  # (flag, value, the note rule that set it) applied over the preset
    policy: str = ""                       # blank-field policy used (benchmarks/README.md)


class NotePattern:
    """A compiled note pattern whose `search` first tests for literals every match contains (`needles`: plain
    substring tests, one of which must hold), so that most rows skip the regex engine: a row's notes run to ~900
    characters with its recipe facts, and a pattern that may start at any digit scans them all (~0.1 s of
    `validate` went to ~30 such scans per row, issue #13). The same result as `pattern.search` on every text:
    a pattern with IGNORECASE is tested on the lower-cased text, and only when the text is ASCII (IGNORECASE also
    folds a few non-ASCII letters, e.g. U+212A KELVIN SIGN, onto ASCII ones); every other method is the
    pattern's own.

    Source: Python `re` documentation (IGNORECASE: Unicode case folding of [a-z])."""

    __slots__ = ("folded", "needles", "regex")

    def __init__(self, pattern: str, flags: int = 0, needles: tuple = ()):
        self.regex = re.compile(pattern, flags)
        self.folded = bool(flags & re.IGNORECASE)
        if not needles or (self.folded and any(n != n.lower() or not n.isascii() for n in needles)):
            raise ValueError(f"NotePattern {pattern!r}: needles must be given (lower-case ASCII with IGNORECASE)")
        self.needles = tuple(needles)

    def search(self, text, *args):
        if not args:
            hay = _ascii_lower(text) if self.folded else text
            if hay is not None and not any(n in hay for n in self.needles):
                return None
        return self.regex.search(text, *args)

    def __getattr__(self, name):
        return getattr(self.regex, name)


@lru_cache(maxsize=4096)
def _ascii_lower(text: str) -> Optional[str]:
    """text.lower() of an ASCII text (a row's notes are tested by ~20 patterns); None otherwise."""
    return text.lower() if text.isascii() else None


_HEAD_DIM = NotePattern(r"head_dim\s+(\d+)", re.I, ("head_dim",))
_EVAL_BLOCK = NotePattern(r"([\d,]+) tokens per eval block.*?eval \(([\d,]+) sequences forward\)", re.I | re.S,
                          ("tokens per eval block",))
_DENSE_PREFIX = re.compile(r"first\s+(\d+)\s+layers\s+dense", re.I)
#: TP comm overlap as the notes state it: Megatron's --tp-comm-overlap, or Ascend MC2 (MindSpeed --use-mc2 when it is
#: in effect: the SP all-gather / reduce-scatter fused with the matmuls, torch_npu npu_all_gather_base_mm /
#: npu_mm_reduce_scatter_base; Pangu Ultra, arXiv 2504.07866, "MC2 compute-communication fusion").
_TP_OVERLAP = NotePattern(r"tp[ _-]comm[ _-]overlap|\bmc2 compute-communication fusion", 0,
                          ("tp comm", "tp_comm", "tp-comm", "mc2 compute-communication fusion"))
_AG_ONLY_TP_OVERLAP = NotePattern(r"collective matmul on the tensor-parallel all-gather side only|"
                                  r"xla_tpu_decompose_all_gather_einsum=true", 0,
                                  ("collective matmul", "xla_tpu_decompose_all_gather_einsum"))
_RS_TP_OVERLAP = re.compile(r"xla_tpu_decompose_einsum_reduce_scatter=true")
_EP_OVERLAP = NotePattern(r"ep[ _-]a2a[ _-]overlap|overlap[ _-]moe[ _-]expert[ _-]parallel[ _-]comm", 0,
                          ("a2a", "overlap moe", "overlap_moe", "overlap-moe"))
_DEEPEP = NotePattern(r"deepep|hybridep|flex token dispatcher", 0, ("deepep", "hybridep", "flex token dispatcher"))
_RECOMPUTE_MODULES = re.compile(r"recompute modules \[([a-z_, ]*)\]")
_MAX_NODES = NotePattern(r"at most (\d+) nodes per token", 0, ("nodes per token",))
_RECIPE_LAYOUT = re.compile(r"recipe layout: ([a-z_0-9 ,]*)")
_RECIPE_CELL = re.compile(r"\b(tp|zero_stage|vpp|micro_batch) (\d+)")
_CONV_EMBEDDING = re.compile(r"incl(\.|udes|uding)? embeddings|includes embeddings|incl\. embeddings")


# ---------------------------------------------------------------------------------------------------------------
# model and hardware
# ---------------------------------------------------------------------------------------------------------------

def _mla_from_presets(hidden: int, heads: int) -> Optional[MLASpec]:
    """MLA dimensions of a shipped preset with the same hidden size and heads (the schema has no MLA columns; a
    truncated run keeps the full model's widths, so the depth is not compared)."""
    for name in available_models():
        m = load_model(name)
        if m.mla is not None and m.hidden_size == hidden and m.num_heads == heads:
            return m.mla
    return None


#: MLA dimensions as the notes state them (data README: "Blank for multi-head latent attention (MLA; the notes give
#: its dimensions)"): HF-config names (q_lora_rank 1536) or short forms (q_lora 1536, qk_nope 128, v_head 128), and
#: SimuMax's "qk_head_dim 128 + rope 64" / "head_dim 128 (v_head_dim".
_MLA_NOTE = {
    "q_lora_rank": re.compile(r"\bq_lora(?:_rank)?\s+(\d+)", re.I),
    "kv_lora_rank": re.compile(r"\bkv_lora(?:_rank)?\s+(\d+)", re.I),
    "qk_nope_head_dim": re.compile(r"\bqk_(?:nope(?:_head_dim)?|head_dim)\s+(\d+)", re.I),
    "qk_rope_head_dim": re.compile(r"\bqk_rope(?:_head_dim)?\s+(\d+)|\+\s*rope\s+(\d+)", re.I),
    "v_head_dim": re.compile(r"\bv_head(?:_dim)?\s+(\d+)|head_dim\s+(\d+)\s*\(v_head_dim", re.I),
}
#: Head dimensions every published MLA model uses (DeepSeek-V2, arXiv 2405.04434 sec. 3.1.2: d_h 128, d_h^R 64;
#: DeepSeek-V3 and Kimi K2 HF configs: qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128), taken where the
#: notes give the ranks but not the head dimensions.
MLA_DEFAULT_HEAD_DIMS = {"qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128}


def mla_of_notes(notes: str) -> tuple[Optional[MLASpec], list]:
    """(MLA spec from the notes' dimensions or None when they state no kv_lora_rank, the head dimensions that were
    not stated and took MLA_DEFAULT_HEAD_DIMS)."""
    found = {}
    for key, rx in _MLA_NOTE.items():
        m = rx.search(notes)
        if m:
            found[key] = int(next(g for g in m.groups() if g is not None))
    if "kv_lora_rank" not in found:
        return None, []
    missing = [k for k in MLA_DEFAULT_HEAD_DIMS if k not in found]
    for k in missing:
        found[k] = MLA_DEFAULT_HEAD_DIMS[k]
    return MLASpec(**found), missing


def _attention_of(row: dict, notes: str, assumptions: list) -> tuple:
    """(head_dim from the notes or None, MLA spec or None) of a row; RowError when the heads do not fit."""
    h, a = row["hidden"], row["n_heads"]
    m = _HEAD_DIM.search(notes)
    head_dim = int(m.group(1)) if m else None
    if head_dim is None and h % a != 0:
        raise RowError(f"hidden ({h}) is not a multiple of n_heads ({a}) and the notes give no head_dim")
    mla = None
    if row["n_kv_heads"] is None:
        if "MLA" in notes or "latent" in notes.lower():
            mla, missing = mla_of_notes(notes)
            if mla is not None:
                assumptions.append("MLA dimensions from the notes" + (
                    f" ({', '.join(missing)} not stated: {', '.join(str(MLA_DEFAULT_HEAD_DIMS[k]) for k in missing)}"
                    ", the published MLA models' value)" if missing else ""))
            else:
                mla = _mla_from_presets(h, a)
                if mla is not None:
                    assumptions.append("MLA dimensions taken from the shipped preset of the same width and heads")
                else:
                    assumptions.append("MLA approximated as multi-head attention (no MLA dimensions in the row)")
        else:
            assumptions.append("n_kv_heads blank: multi-head attention assumed")
    return head_dim, mla


def _moe_of(row: dict, notes: str) -> Optional[MoESpec]:
    """The row's MoE spec (a dense prefix from the notes), or None for a dense model."""
    if row["moe_experts"] is None:
        return None
    for c in ("moe_topk", "moe_expert_ffn"):
        if row[c] is None:
            raise RowError(f"MoE row with blank {c}")
    pm = _DENSE_PREFIX.search(notes)
    return MoESpec(num_experts=row["moe_experts"], top_k=row["moe_topk"], expert_ffn_hidden_size=row["moe_expert_ffn"],
                   num_shared_experts=row["moe_shared_experts"] or 0, layer_freq=row["moe_layer_freq"] or 1,
                   first_dense_layers=int(pm.group(1)) if pm else 0)


#: "one MTP layer", "2 MTP layers", "one multi-token prediction layer": the run trains multi-token prediction
#: modules (Megatron-Core --mtp-num-layers; recipe facts in recipe_notes.yaml).
_MTP_NOTE = NotePattern(r"\b(one|two|three|\d+)\s+(?:MTP|multi-token[- ]prediction)\s+(?:layers?|modules?)\b",
                        re.IGNORECASE, ("mtp", "multi-token"))
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3}


def mtp_layers_of_notes(notes: str) -> int:
    """Multi-token prediction modules the notes state (0 when they state none)."""
    m = _MTP_NOTE.search(notes)
    if m is None:
        return 0
    n = m.group(1).lower()
    return _NUMBER_WORDS[n] if n in _NUMBER_WORDS else int(n)


#: A Megatron-Core pipeline layout as the notes quote it: "pp_layout Et*4|(t*4|)*14tmL" or "pipeline layout ...".
_PP_LAYOUT_NOTE = re.compile(r"(?:pp_layout|pipeline layout)\s+([EtmL|()*0-9]+)")


def megatron_pipeline_layout(layout: str) -> tuple[tuple, int]:
    """(decoder layers per virtual pipeline stage, MTP modules) of a Megatron-Core pipeline layout string: stages
    separated by '|', 'E' the embedding, 't' one decoder layer, 'm' one multi-token prediction module, 'L' the
    loss, 'x*N' and '(...)*N' repeat a symbol or a group N times. "Et*4|(t*4|)*14tmL" -> (4, 4 x 14, 1), 1 MTP.

    Source: Megatron-Core --pipeline-model-parallel-layout (transformer/pipeline_parallel_layer_layout.py, the
    string form: E, t, m, L, '|' and '*' repetition); Megatron-Bridge recipes/deepseek/deepseek_v3.py
    (set_deepseek_v3_pipeline_model_parallel_layout). Raises ValueError on an unbalanced or unknown symbol."""

    def expand(s: str, i: int) -> tuple[str, int]:
        out = []
        while i < len(s) and s[i] != ")":
            c = s[i]
            if c == "(":
                unit, i = expand(s, i + 1)
                if i >= len(s):
                    raise ValueError(f"pipeline layout {layout!r}: unbalanced '('")
                i += 1
            elif c in "EtmL|":
                unit, i = c, i + 1
            else:
                raise ValueError(f"pipeline layout {layout!r}: unexpected {c!r}")
            rep = re.match(r"\*(\d+)", s[i:])
            if rep:
                unit, i = unit * int(rep.group(1)), i + len(rep.group(0))
            out.append(unit)
        return "".join(out), i

    flat, end = expand(layout, 0)
    if end != len(layout):
        raise ValueError(f"pipeline layout {layout!r}: unbalanced ')'")
    stages = flat.split("|")
    return tuple(st.count("t") for st in stages), flat.count("m")


def stage_layers_of_notes(notes: str, model: ModelSpec, assumptions: list) -> tuple[Optional[tuple], ModelSpec]:
    """(decoder layers per virtual stage or None, the model with the layout's MTP modules) of a row whose notes
    quote its pipeline layout; RowError when the layout's layers do not add up to the model's."""
    m = _PP_LAYOUT_NOTE.search(notes)
    if m is None:
        return None, model
    text = m.group(1)
    while text.endswith(")") and text.count(")") > text.count("("):     # "(pp_layout ...)": the prose's bracket
        text = text[:-1]
    try:
        layers, mtp = megatron_pipeline_layout(text)
    except ValueError as err:
        raise RowError(str(err)) from None
    if sum(layers) != model.num_layers:
        raise RowError(f"pipeline layout {text!r} places {sum(layers)} decoder layers; the model has "
                       f"{model.num_layers}")
    if mtp != model.mtp_layers:
        model = model.model_copy(update={"mtp_layers": mtp})
    assumptions.append(f"pipeline layout {text} from the notes: layers per virtual stage "
                       f"{list(layers)}, {mtp} MTP module(s) on the last")
    return layers, model


#: Local attention as the notes state it (the runs file has no column for it): "a 1,024-token sliding window",
#: "sliding-window (128)", "chunked attention (8192)"; the global layers: "every 6th layer is global", "every 4th
#: layer NoPE" (Llama 4's NoPE layers are its full-attention ones), "alternating sliding-window (W) and full".
_WINDOW_NOTE = NotePattern(r"(\d[\d,]*)-token sliding[- ]window|sliding[- ]window (?:of )?\(?(\d[\d,]*)\)?", re.I,
                           ("sliding",))
_CHUNK_NOTE = NotePattern(r"chunked attention (?:of |chunk )?\(?(\d[\d,]*)\)?", re.I, ("chunked attention",))
_GLOBAL_EVERY_NOTE = NotePattern(r"every (\d+)(?:st|nd|rd|th) layer (?:is )?(?:global|full|nope)", re.I, ("every ",))
_ALTERNATING_NOTE = NotePattern(r"alternating sliding[- ]window.{0,20}? and (?:full|global) attention", re.I,
                                ("alternating sliding",))


def attention_pattern_of_notes(notes: str) -> dict:
    """ModelSpec local-attention fields (attention_window or attention_chunk, global_attention_every) the notes
    state; {} when they state none (full attention on every layer).

    The facts are the models' own: Gemma 3 (Gemma Team 2025, arXiv 2503.19786, sec. 2: 5 local layers of window
    1024 per global layer), GPT-OSS (OpenAI gpt-oss model card 2025 and the HF config: sliding_window 128,
    layer_types alternating sliding/full), Llama 4 (HF config attention_chunk_size 8192, no_rope_layers: every 4th
    layer NoPE with full attention, the others chunked), Gemma 2 (arXiv 2408.00118: alternating 4096 / global)."""
    out: dict = {}
    w, c = _WINDOW_NOTE.search(notes), _CHUNK_NOTE.search(notes)
    if w:
        out["attention_window"] = int(next(g for g in w.groups() if g).replace(",", ""))
    elif c:
        out["attention_chunk"] = int(c.group(1).replace(",", ""))
    else:
        return out
    k = _GLOBAL_EVERY_NOTE.search(notes)
    if k:
        out["global_attention_every"] = int(k.group(1))
    elif _ALTERNATING_NOTE.search(notes):
        out["global_attention_every"] = 2
    return out


#: Model features the notes state in the model provider's terms (recipe_notes.yaml: Megatron-Bridge's GPT-OSS provider
#: sets activation_func_clamp_value 7.0, add_bias_linear True and position_embedding_type yarn).
_GLU_CLAMP_NOTE = NotePattern(r"activation_func_clamp_value (\d+(?:\.\d+)?)", 0, ("activation_func_clamp_value",))
_LINEAR_BIAS_NOTE = NotePattern(r"\badd_bias_linear\b(?! false)", 0, ("add_bias_linear",))
_YARN_NOTE = NotePattern(r"position_embedding_type yarn \(yarn_rotary_scaling_factor (\d+(?:\.\d+)?)\)", 0,
                         ("position_embedding_type yarn",))
_QK_NORM_NOTE = NotePattern(r"\bqk_layernorm true\b", re.IGNORECASE, ("qk_layernorm true",))


def model_features_of_notes(notes: str) -> dict:
    """ModelSpec feature fields (glu_clamp, linear_bias, yarn_mscale, qk_norm) the notes state in Megatron-Core's
    config names; {} when they state none.

    Source: the run's model provider as recipe_notes.yaml quotes it (Megatron-Bridge models/gpt_oss: GPT-OSS's
    clamped SwiGLU, linear biases and YaRN RoPE, from the HF config swiglu_limit 7.0, attention_bias true and
    rope_scaling yarn factor 32; yarn_mscale unset: Megatron-Core's _yarn_get_mscale, 0.1 ln(factor) + 1;
    models/qwen: Qwen3's qk_layernorm True)."""
    out: dict = {}
    m = _GLU_CLAMP_NOTE.search(notes)
    if m:
        out["glu_clamp"] = float(m.group(1))
    if _LINEAR_BIAS_NOTE.search(notes):
        out["linear_bias"] = True
    m = _YARN_NOTE.search(notes)
    if m:
        out["yarn_mscale"] = 0.1 * math.log(float(m.group(1))) + 1.0
    if _QK_NORM_NOTE.search(notes):
        out["qk_norm"] = True
    return out


def model_from_row(row: dict, assumptions: list) -> ModelSpec:
    """A ModelSpec from the row's model columns (notes give head_dim, a dense prefix, MLA)."""
    blank = [c for c in ("n_layers", "hidden", "n_heads", "vocab", "seq_len") if row[c] is None]
    if blank:
        raise RowError(f"model column(s) blank: {', '.join(blank)}")
    notes = row.get("notes") or ""
    head_dim, mla = _attention_of(row, notes, assumptions)
    moe = _moe_of(row, notes)
    ffn = row["ffn_hidden"]
    if ffn is None and moe is not None:
        ffn = row["moe_expert_ffn"]          # no dense layers: the value is unused
    if ffn is None:
        ffn = 4 * row["hidden"]
        assumptions.append("ffn_hidden blank: 4 x hidden assumed")
    name = (re.sub(r"[^a-z0-9.\-]", "-", row["id"].lower()) or "row")[:MAX_NAME]   # long row ids: cut to a name
    local = attention_pattern_of_notes(notes)
    if local:
        kind = (f"sliding window {local['attention_window']}" if "attention_window" in local
                else f"chunked attention {local['attention_chunk']}")
        k = local.get("global_attention_every")
        nth = {1: "", 2: "2nd ", 3: "3rd "}.get(k, f"{k}th ") if k else ""
        assumptions.append(f"local attention from the notes: {kind}, "
                           + (f"every {nth}layer global" if k else "on every layer"))
    features = model_features_of_notes(notes)
    if features:
        assumptions.append("model features from the notes: " + ", ".join(f"{k}={v}" for k, v in features.items()))
    try:
        return ModelSpec(name=name, source=row.get("source") or "runs file", num_layers=row["n_layers"],
                         hidden_size=row["hidden"], num_heads=row["n_heads"],
                         num_kv_heads=row["n_kv_heads"] if mla is None else None,
                         head_dim=head_dim if mla is None else (mla.v_head_dim if mla else None), ffn_hidden_size=ffn,
                         gated_mlp=bool(row["gated_mlp"]) if row["gated_mlp"] is not None else False,
                         vocab_size=row["vocab"], max_seq_len=row["seq_len"], moe=moe, mla=mla,
                         mtp_layers=mtp_layers_of_notes(notes), **local, **features)
    except Exception as err:  # pydantic ValidationError
        raise RowError(f"model columns do not form a valid model: {err}".splitlines()[0]) from None


#: A row's notes may state a power limit ("power limit 500 W", "500 W power cap") or a sustained clock fraction
#: ("clock fraction 0.85"); the row is then predicted for that part (specs/power.py), not a full-power one.
_POWER_NOTE = NotePattern(r"(?:power (?:limit|cap)(?:ed|ped)?(?: of| at| to)?\s*(\d+(?:\.\d+)?)\s*W\b)|"
                          r"(?:(\d+(?:\.\d+)?)\s*W power (?:limit|cap))", re.IGNORECASE, ("power",))
_CLOCK_NOTE = NotePattern(r"clock fraction\s*(0?\.\d+|1(?:\.0+)?)", re.IGNORECASE, ("clock fraction",))


def power_of_notes(notes: str) -> dict:
    """{"power_limit_w": W} or {"clock_fraction": f} when the notes state one, else {}."""
    m = _POWER_NOTE.search(notes)
    if m:
        return {"power_limit_w": float(m.group(1) or m.group(2))}
    m = _CLOCK_NOTE.search(notes)
    return {"clock_fraction": float(m.group(1))} if m else {}


def hardware_from_row(row: dict, profiles: Optional[dict] = None) -> HardwareProfile:
    """The row's profile with its per-row overrides (Gb/s columns converted to GB/s). `profiles` (a dict one file's
    rows share) keeps each named profile loaded once, and each profile with the same overrides built once:
    profiles are frozen."""
    name = row["hardware_profile"]
    if not name:
        raise RowError("hardware_profile blank")
    try:
        hw = profiles.get(name) if profiles is not None else None
        if hw is None:
            hw = load_hardware(name)
            if profiles is not None:
                profiles[name] = hw
    except SpecError as err:
        msg = str(err)
        if msg.startswith("unknown hardware profile"):
            raise RowError(f"unknown hardware profile '{name}'") from None
        raise RowError(msg) from None
    over = {}
    if row["devices_per_node"] is not None and row["devices_per_node"] != hw.devices_per_node:
        over["devices_per_node"] = row["devices_per_node"]
    if row["device_memory_gb"] is not None:
        over["memory_gb"] = row["device_memory_gb"]
    if row["scaleup_gbps_per_device"] is not None:
        over["scaleup_gb_per_s"] = row["scaleup_gbps_per_device"] / 8.0
    if row["scaleout_gbps_per_device"] is not None:
        over["scaleout_gb_per_s"] = row["scaleout_gbps_per_device"] / 8.0
    over.update(power_of_notes(row.get("notes") or ""))
    if over:
        key = (name, tuple(sorted(over.items())))      # rows of one cluster state the same overrides
        got = profiles.get(key) if profiles is not None else None
        if got is not None:
            return got
        try:
            hw = override_hardware(hw, **over)
        except SpecError as err:
            raise RowError(str(err)) from None
        if profiles is not None:
            profiles[key] = hw
    return hw


# ---------------------------------------------------------------------------------------------------------------
# layout, framework facts, measurement window
# ---------------------------------------------------------------------------------------------------------------

def known_layout(row: dict, model: ModelSpec, assumptions: list) -> dict:
    """The layout cells the row states (None = blank, to search), with what follows from the others: ep 1 for a
    dense model, no SP without TP, no interleaving without a pipeline. RowError when tp, pp, dp and cp are all
    stated and do not fill the row's devices."""
    known = {k: row[k] for k in ("tp", "pp", "dp", "ep", "cp", "vpp", "micro_batch")}
    known["zero_stage"] = row["zero_stage"]
    known["recompute"] = row["recompute"] or None
    known["sequence_parallel"] = row["sequence_parallel"]
    if model.moe is None:
        known["ep"] = 1
    if known["cp"] is None:
        known["cp"] = 1
        assumptions.append("cp blank: 1 assumed")
    if known["tp"] == 1:
        known["sequence_parallel"] = 0
    if known["pp"] == 1:
        known["vpp"] = 1
    if None not in (known["tp"], known["pp"], known["dp"]):
        prod = known["tp"] * known["pp"] * known["dp"] * known["cp"]
        if prod != row["n_devices"]:
            raise RowError(f"tp({known['tp']}) * pp({known['pp']}) * dp({known['dp']}) * cp({known['cp']}) = {prod} "
                           f"!= n_devices ({row['n_devices']})")
    return known


def recipe_layout(notes: str, known: dict, assumptions: list, inferred: frozenset = frozenset(),
                  n_devices: Optional[int] = None) -> dict:
    """`known` with the cells that the row's recipe facts state ("recipe layout: tp 8, zero_stage 0, micro_batch 4",
    recipe_notes.yaml: the run's own launch script at a named commit): blank cells are filled, and cells the row
    itself marks as inferred (its `inferred` column: an assumption of whoever transcribed it) are replaced; cells
    the source states are never changed. A replaced tp re-derives an inferred dp as n_devices / (tp pp cp).

    Source: the recipe file each recipe_notes.yaml entry names."""
    m = _RECIPE_LAYOUT.search(notes.lower())
    if m is None:
        return known
    out = dict(known)
    for field_, value in _RECIPE_CELL.findall(m.group(1)):
        value = int(value)
        if out.get(field_) is None:
            out[field_] = value
            assumptions.append(f"{field_} blank: {value} from the run's recipe (recipe_notes.yaml)")
        elif field_ in inferred and out[field_] != value:
            assumptions.append(f"{field_} {out[field_]} (inferred in the runs file) -> {value} from the run's recipe "
                               "(recipe_notes.yaml)")
            out[field_] = value
            if field_ == "tp":
                if value == 1:
                    out["sequence_parallel"] = 0
                if "dp" in inferred and n_devices and out.get("pp") and out.get("cp"):
                    dp, rest = divmod(n_devices, value * out["pp"] * out["cp"])
                    if rest:
                        raise RowError(f"recipe tp {value} does not divide n_devices ({n_devices}) / (pp cp)")
                    out["dp"] = dp
    return out


#: The documented override table: a note pattern that states a stack setting, the layout flags it sets over the
#: row's framework preset, and why (benchmarks/README.md lists it). Applied only where it changes the preset's value.
NOTE_OVERRIDES = (
    (_TP_OVERLAP, {"tp_comm_overlap": True}, "notes state TP comm overlap (--tp-comm-overlap, or Ascend MC2 fusion)"),
    (_AG_ONLY_TP_OVERLAP, {"tp_comm_overlap": True},
     "notes state XLA collective matmul (decomposed all-gather einsum): TP comm overlap, on the side "
     "overlap.tp_overlap_scope names"),
    (_EP_OVERLAP, {"ep_comm_overlap": True}, "notes state EP all-to-all overlap (--overlap-moe-expert-parallel-comm)"),
    (_DEEPEP, {"moe_dispatch": "node-limited"},
     "notes state DeepEP / HybridEP (Megatron-Core flex token dispatcher): one copy per node, NVLink forwarding"),
    (NotePattern(r"no --overlap-grad-reduce|without --overlap-grad-reduce|overlap[ _-]grad[ _-]reduce[ _-]off", 0,
                 ("overlap-grad", "overlap_grad", "overlap grad")),
     {"overlap_grad_reduce": False, "dp_param_gather_overlap": False},
     "notes state no --overlap-grad-reduce / --overlap-param-gather (SimuMax's B200 runs)"),
    (NotePattern(r"(?<!no --use-)(?<!without --use-)(?:flash[ _-]?attention(?! off)|flashattention|flash-attn)", 0,
                 ("flash",)),
     {"flash_attention": True},
     "notes name FlashAttention"),
    (NotePattern(r"without --use-flash-attn|no --use-flash-attn|flash attention off", 0, ("flash",)),
     {"flash_attention": False},
     "notes state the run's script does not pass --use-flash-attn (unfused attention: s x s scores and softmax)"),
    (NotePattern(r"--ddp-impl torch", 0, ("--ddp-impl torch",)), {"overlap_grad_reduce": True},
     ("notes state PyTorch DDP (--DDP-impl torch): bucketed gradient all-reduce under the backward (Li et al. 2020, "
      "arXiv 2006.15704)")),
)


#: A JAX remat policy the notes name (`remat_policy=NAME`), for presets whose selective recompute is a
#: 'remat-policy': the tensors each named MaxText policy saves or offloads (RecomputeSpec.saved). Source:
#: AI-Hypercomputer/maxtext layers/decoders.py (minimal = checkpoint_dots_with_no_batch_dims: every weight matmul
#: output; minimal_offloaded the same, offloaded; save_dot_except_mlp; save_qkv_proj; qkv_proj_offloaded;
#: save_out_proj); Praxis AutodiffCheckpointType (save_dot_except_logits[_ffn1]: every dot output but the logits
#: [and the first MLP matmul]). `custom` lists its tensors in the notes (tensors_on_device / tensors_to_offload).
REMAT_POLICIES = {
    "minimal": ("qkv_proj", "out_proj", "mlpwi", "mlpwo"),
    "minimal_offloaded": ("qkv_proj", "out_proj", "mlpwi", "mlpwo"),
    "save_dot_except_mlpwi": ("qkv_proj", "out_proj", "mlpwo"),
    "save_dot_except_mlp": ("qkv_proj", "out_proj"),
    "save_qkv_proj": ("qkv_proj",),
    "qkv_proj_offloaded": ("qkv_proj",),
    "save_out_proj": ("out_proj",),
    "save_dot_except_logits": ("qkv_proj", "context", "out_proj", "mlpwi", "mlpwo"),
    "save_dot_except_logits_ffn1": ("qkv_proj", "context", "out_proj", "mlpwo"),
}
_REMAT_POLICY = re.compile(r"remat_policy=([a-z0-9_]+)")
_REMAT_CUSTOM = re.compile(r"remat_policy=custom with (.*?)(?:\(the rest|\(rest|:|$)")
_REMAT_NAMES = (("decoder_layer_input", "decoder_layer_input"), ("query/key/value", "qkv_proj"),
                ("q/k/v", "qkv_proj"), ("qkv", "qkv_proj"), ("out_proj", "out_proj"), ("context", "context"),
                ("mlpwi", "mlpwi"), ("mlpwo", "mlpwo"))


def remat_policy_saved(notes: str) -> Optional[tuple[str, ...]]:
    """The tensors the remat policy named in the notes saves (REMAT_POLICIES; for `custom`, the tensors the notes
    list as kept or offloaded, those said to be recomputed excluded), None when the notes name no known policy."""
    m = _REMAT_POLICY.search(notes)
    if m is None:
        return None
    if m.group(1) != "custom":
        return REMAT_POLICIES.get(m.group(1))
    c = _REMAT_CUSTOM.search(notes)
    if c is None:
        return None
    saved: list[str] = []
    for item in re.split(r",| and ", c.group(1)):
        if "recomputed" in item:
            continue
        for token, name in _REMAT_NAMES:
            if token in item and name not in saved:
                saved.append(name)
                break
    return tuple(saved)


def remat_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with the remat policy the notes state (a documented override, reported per row): only for
    presets whose selective recompute is a 'remat-policy'."""
    if fw.recompute.selective != "remat-policy":
        return fw, ()
    saved = remat_policy_saved(notes.lower())
    if saved is None or saved == fw.recompute.saved:
        return fw, ()
    rec = fw.recompute.model_copy(update={"saved": saved})
    return fw.model_copy(update={"recompute": rec}), (
        ("recompute_saved", ",".join(saved), "notes state the JAX remat policy (remat_policy=...): its saved tensors"),)


#: CUDA graphs a row's notes state: "Transformer Engine CUDA graphs of attn, moe_router and moe_preprocess" (the
#: recipe's cuda_graph_impl transformer_engine with its cuda_graph_scope), or "no CUDA graphs".
_CUDA_GRAPHS = re.compile(r"cuda graphs of ((?:(?:attn|mlp|moe_router|moe_preprocess|moe)(?:,\s*|\s+and\s+|\s*))+)")
_NO_CUDA_GRAPHS = re.compile(r"no cuda graphs")
_GRAPH_SCOPES = ("attn", "mlp", "moe_router", "moe_preprocess", "moe")


def cuda_graph_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with the CUDA-graph scope the notes state (Megatron-Core cuda_graph_impl transformer_engine with
    cuda_graph_scope / --cuda-graph-modules; "no CUDA graphs": none), a documented override reported per row; the
    preset unchanged when the notes state nothing or the preset's own scope.

    Source: the row's recipe facts (recipe_notes.yaml: the perf config's cuda_graph_impl and cuda_graph_scope)."""
    text = notes.lower()
    m = _CUDA_GRAPHS.search(text)
    if m is not None:
        named = re.findall(r"moe_router|moe_preprocess|attn|mlp|moe", m.group(1))
        scope = tuple(s for s in _GRAPH_SCOPES if s in named)
    elif _NO_CUDA_GRAPHS.search(text):
        scope = ()
    else:
        return fw, ()
    if scope == fw.host.cuda_graph_scope:
        return fw, ()
    host = fw.host.model_copy(update={"cuda_graph_scope": scope})
    return fw.model_copy(update={"host": host}), (
        ("cuda_graphs", ",".join(scope) or "none",
         "notes state the recipe's CUDA graphs (cuda_graph_impl transformer_engine, cuda_graph_scope)"),)


_DENSE_DISPATCH = NotePattern(r"dense \(non-sparse\) matmul dispatch|sparse_matmul[ =]+false", 0, ("matmul",))


def dispatch_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with MoE dispatch 'dense-einsum' when the notes state MaxText's dense (non-sparse) matmul
    dispatch (a documented override, reported per row)."""
    if fw.moe.dispatch == "dense-einsum" or not _DENSE_DISPATCH.search(notes.lower()):
        return fw, ()
    moe = fw.moe.model_copy(update={"dispatch": "dense-einsum"})
    return fw.model_copy(update={"moe": moe}), (
        ("moe_dispatch", "dense-einsum", "notes state a dense (non-sparse) matmul MoE dispatch (sparse_matmul false)"),)


_HYBRIDEP = re.compile(r"hybrid[ _-]?ep")


def flex_backend_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with moe.flex_backend 'hybridep' when the notes state the HybridEP flex dispatcher backend
    (Megatron-Core --moe-flex-dispatcher-backend hybridep; a documented override, reported per row)."""
    if fw.moe.flex_backend == "hybridep" or not _HYBRIDEP.search(notes.lower()):
        return fw, ()
    moe = fw.moe.model_copy(update={"flex_backend": "hybridep"})
    return fw.model_copy(update={"moe": moe}), (
        ("moe_flex_backend", "hybridep", "notes state the HybridEP flex token dispatcher backend"),)


def tp_scope_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with TP comm overlap on the all-gather side only when the notes state XLA's decomposed all-gather
    einsum without its reduce-scatter counterpart (collective matmul on the all-gather side; a documented override,
    reported per row): overlap.tp_overlap_scope 'all-gather'. The layout flag tp_comm_overlap comes from
    NOTE_OVERRIDES."""
    low = notes.lower()
    if not _AG_ONLY_TP_OVERLAP.search(low) or _RS_TP_OVERLAP.search(low) or fw.overlap.tp_overlap_scope == "all-gather":
        return fw, ()
    ov = fw.overlap.model_copy(update={"tp_overlap_scope": "all-gather"})
    return fw.model_copy(update={"overlap": ov}), (
        ("tp_overlap_scope", "all-gather", "notes state XLA's decomposed all-gather einsum only (collective matmul "
                                           "on the TP all-gather side): the reduce-scatter half stays exposed"),)


_SC_ALL_REDUCE = NotePattern(r"(?<!no )sparsecore offload of (?:the )?all-reduce", 0, ("sparsecore offload of",))


def grad_reduce_override(fw: FrameworkSpec, notes: str, family: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with the ZeRO-3 gradient reduction overlapped on the row's family when the notes state the
    recipe's SparseCore offload of the all-reduce (MaxText ENABLE_SPARSECORE_OFFLOADING_FOR_ALL_REDUCE, which
    overlaps the gradient reduction with compute: benchmarks/xla_flags_library.py); a documented override, reported
    per row."""
    blocking = fw.overlap.zero3_reduce_blocking_families
    if family not in blocking or not _SC_ALL_REDUCE.search(notes.lower()):
        return fw, ()
    ov = fw.overlap.model_copy(update={"zero3_reduce_blocking_families": tuple(f for f in blocking if f != family)})
    return fw.model_copy(update={"overlap": ov}), (
        ("zero3_reduce_overlap", True, "notes state the recipe's SparseCore offload of the all-reduce: the FSDP "
                                       "gradient reduction runs beside compute"),)


_RS_AS_ALL_REDUCE = NotePattern(r"gradients reduced by all-reduce \+ dynamic-slice", 0, ("dynamic-slice",))


def grad_all_reduce_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset with the ZeRO-3 gradient reduction run as an all-reduce + dynamic slice when the notes state it
    (a MaxText recipe whose XLA flags carry neither LAYOUT_FOR_ALL_REDUCE_SCATTER nor REDUCE_SCATTER_FUSION, the
    flag groups that fuse the all-reduce and dynamic slice into a reduce-scatter: benchmarks/xla_flags_library.py;
    costs.communication.zero3_reduce_all_reduce); a documented override, reported per row."""
    if fw.overlap.zero3_reduce_all_reduce or not _RS_AS_ALL_REDUCE.search(notes.lower()):
        return fw, ()
    ov = fw.overlap.model_copy(update={"zero3_reduce_all_reduce": True})
    return fw.model_copy(update={"overlap": ov}), (
        ("zero3_reduce", "all-reduce", "notes state the recipe's XLA flags without the reduce-scatter fusion group: "
                                       "the FSDP gradients are all-reduced, then sliced"),)


_FUSED_SPLASH_BWD = re.compile(r"sa_use_fused_bwd_kernel[ =:]+true")


def attention_bwd_override(fw: FrameworkSpec, notes: str) -> tuple[FrameworkSpec, tuple]:
    """The preset without its own attention-backward FLOP ratios (FlashAttention-2's fused backward, 2.5x the
    forward) when the notes state MaxText's fused splash backward (sa_use_fused_bwd_kernel True in the recipe; the
    base.yml default False runs separate dQ and dK/dV kernels, presets/frameworks/maxtext.yaml); a documented
    override, reported per row."""
    if not fw.attention.bwd_over_fwd_by_kernel or not _FUSED_SPLASH_BWD.search(notes.lower()):
        return fw, ()
    att = fw.attention.model_copy(update={"bwd_over_fwd_by_kernel": {}})
    return fw.model_copy(update={"attention": att}), (
        ("attention_bwd", "fused", "notes state the recipe's fused splash-attention backward "
                                   "(sa_use_fused_bwd_kernel True): one dQ/dK/dV kernel, 2.5x the forward's FLOPs"),)


def row_framework(row: dict) -> FrameworkSpec:
    """The framework preset of a row: its `framework` column (blank: 'unknown') in its year (framework_for_run).

    Source: data README sec. 2.5 (the `framework` column); specs.frameworks_loading.framework_for_run."""
    name = (row.get("framework") or "unknown").strip() or "unknown"
    try:
        return _framework_for(name, row.get("year"))
    except SpecError as err:
        raise RowError(str(err)) from None


@lru_cache(maxsize=256)
def _framework_for(name: str, year) -> FrameworkSpec:
    """framework_for_run, parsed once per (framework, year): presets are frozen."""
    return framework_for_run(name, year)


def framework_facts(row: dict, fw: FrameworkSpec, family: str) -> tuple[dict, tuple]:
    """(the Case flags, the overrides applied): the preset's layout flags on the row's hardware family
    (specs.stack.framework_layout_values), then the NOTE_OVERRIDES whose pattern the notes match and whose value
    differs from the preset's."""
    notes = (row.get("notes") or "").lower()
    facts = framework_layout_values(fw, family)
    facts.update(moe_dispatch="flat", moe_max_nodes=None)
    applied = []
    for pattern, flags, why in NOTE_OVERRIDES:
        if not pattern.search(notes):
            continue
        for k, v in flags.items():
            if facts[k] != v:
                facts[k] = v
                applied.append((k, v, why))
    limit = _MAX_NODES.search(notes)
    if limit:
        facts["moe_max_nodes"] = int(limit.group(1))
        applied.append(("moe_max_nodes", int(limit.group(1)),
                        "notes state node-limited (group-limited) routing: at most M nodes per token"))
    return facts, tuple(applied)


def _recompute_modules(notes: str, fw: FrameworkSpec, known: dict, overrides: tuple, assumptions: list):
    """A row whose notes list the recipe's Megatron-Core recompute modules (`recompute modules [a, b]`, from
    --recompute-modules / recompute_modules) fixes a blank recompute cell: with `mlp` listed, selective recompute
    of the MLP (the preset's selective kind becomes 'mlp'); with `core_attn`, the preset's selective; otherwise
    none. layernorm and moe_act are replayed under any setting (RecomputeSpec.replayed_modules, priced by
    costs.model_ops.module_replay_s), and so is mla_up_proj (costs.layer.mla_up_proj_replay_s).
    Returns (framework, known, overrides).

    Source: Megatron-Core TransformerConfig.recompute_modules; the row's notes (the recipe's recompute_modules)."""
    m = _RECOMPUTE_MODULES.search(notes.lower())
    if not m:
        return fw, known, overrides
    modules = {x.strip() for x in m.group(1).split(",") if x.strip()}
    replayed = tuple(x for x in ("layernorm", "moe_act", "mla_up_proj") if x in modules)
    if replayed and replayed != fw.recompute.replayed_modules:
        fw = fw.model_copy(update={"recompute": fw.recompute.model_copy(update={"replayed_modules": replayed})})
        overrides = overrides + (("recompute_modules", ",".join(replayed), "notes list recompute modules "
                                  "(Megatron-Core --recompute-modules): replayed in the backward "
                                  "(costs.model_ops.module_replay_s, costs.layer.mla_up_proj_replay_s)"),)
    if "mlp" in modules:
        value = "selective"
        if fw.recompute.selective != "mlp":
            fw = fw.model_copy(update={"recompute": fw.recompute.model_copy(update={"selective": "mlp"})})
            overrides = overrides + (("selective_recompute", "mlp", "notes list recompute modules including mlp "
                                      "(Megatron-Core --recompute-modules mlp)"),)
    elif "core_attn" in modules:
        value = "selective"
    else:
        value = "none"
    if known.get("recompute") is None:
        known["recompute"] = value
        assumptions.append(f"recompute blank: {value} from the recipe's recompute modules "
                           f"[{', '.join(sorted(modules))}]")
    return fw, known, overrides


def framework_default_fill(fw: FrameworkSpec, known: dict) -> dict:
    """Fill the blank zero_stage, recompute, vpp and (with tp > 1 stated) sequence_parallel cells the preset
    fixes (FrameworkSpec.defaults; null there = searched); returns what was filled. Mutates `known`.

    Source: the preset's defaults.source (the framework's code defaults and recipes)."""
    d, filled = fw.defaults, {}
    for cell, value in (("zero_stage", d.zero_stage), ("recompute", d.recompute), ("vpp", d.vpp)):
        if known.get(cell) is None and value is not None:
            known[cell] = filled[cell] = value
    if known.get("sequence_parallel") is None and d.sequence_parallel_with_tp is not None \
            and (known.get("tp") or 1) > 1:
        known["sequence_parallel"] = filled["sequence_parallel"] = int(d.sequence_parallel_with_tp)
    return filled


def blank_field_policy(fw: FrameworkSpec, known: dict, global_batch: int) -> tuple[dict, str]:
    """(micro_batch fixed by the framework's micro_batch_rule or None, the policy's name) for a row whose
    micro_batch cell is blank; other blank cells are searched (fastest that fits) unless the preset's defaults fix
    them. Rules (specs.framework.MicroBatchRule): 'micro-batch-one' (torchtitan from 2025-04): micro-batch 1
    under PP, the whole local batch without; 'pp-stages': as many micro-batches as stages; 'fastest-that-fits':
    searched.

    Source: the preset's defaults.source; benchmarks/README.md (blank-field policy)."""
    rule = fw.defaults.micro_batch_rule
    policy = f"{fw.name}: micro-batch {rule}; other blanks fastest-that-fits"
    if known["micro_batch"] is not None or rule == "fastest-that-fits":
        return None, policy
    pp, dp = known["pp"], known["dp"]
    if pp is None or dp is None:
        return None, policy + " (pp or dp blank: micro-batch searched)"
    local = global_batch // dp if global_batch % dp == 0 else None
    if local is None:
        return None, policy
    if rule == "micro-batch-one":
        return (1 if pp > 1 else local), policy
    return (local // pp if local % pp == 0 else None), policy


def eval_sequences_per_step(notes: str, training: TrainingSpec, assumptions: list) -> float:
    """Forward-only evaluation sequences per training step inside the measured window (0 when none).

    Throughput measured over windows that include a forward-only evaluation (data README sec. 3, pitfall 5): when
    the notes give the window's tokens and the evaluated sequences, the same window is predicted."""
    ev = _EVAL_BLOCK.search(notes)
    if not ev:
        return 0.0
    block_tokens = float(ev.group(1).replace(",", ""))
    steps_per_block = block_tokens / float(training.tokens_per_step)
    assumptions.append(f"measured window includes evaluation: {ev.group(2)} sequences forward per "
                       f"{ev.group(1)} training tokens, predicted the same way")
    return float(ev.group(2).replace(",", "")) / steps_per_block


# ---------------------------------------------------------------------------------------------------------------
# rows -> cases
# ---------------------------------------------------------------------------------------------------------------

#: A token-dropping MoE whose notes state its capacity factor in MaxText's spelling (`capacity_factor X`): every
#: expert buffer is padded to capacity (MaxText's dropping path computes [E, C, h] buffers; layers/moe.py).
_CAPACITY = re.compile(r"token-dropping moe: capacity_factor (\d+(?:\.\d+)?)"
                       r"|--moe-expert-capacity-factor (\d+(?:\.\d+)?) with --moe-pad-expert-input-to-capacity")


#: DeepSpeed-MoE's token-dropping capacity in Megatron-DeepSpeed's flag spelling: --moe-train-capacity-factor X
#: (with --moe-min-capacity N); DeepSpeed pads every [E, C, M] dispatch buffer to capacity (deepspeed/moe/
#: sharded_moe.py _capacity and MOELayer.forward), unless --disable-moe-token-dropping is also stated.
_DS_CAPACITY = re.compile(r"--moe-train-capacity-factor (\d+(?:\.\d+)?)")
_DS_MIN_CAPACITY = re.compile(r"--moe-min-capacity (\d+)")


def _routing_of(notes: str, assumptions: list) -> Optional[RoutingSpec]:
    """The MoE routing a row's notes state (a token-dropping capacity factor), None when they state none."""
    low = notes.lower()
    ds = _DS_CAPACITY.search(low)
    if ds is not None and "--disable-moe-token-dropping" not in low:
        mc = _DS_MIN_CAPACITY.search(low)
        min_cap = int(mc.group(1)) if mc else 0
        assumptions.append(f"token-dropping MoE: capacity factor {ds.group(1)}, min capacity {min_cap}, buffers "
                           "padded to capacity (DeepSpeed flags in the notes)")
        return RoutingSpec(capacity_factor=float(ds.group(1)), min_capacity=min_cap, pad_to_capacity=True)
    m = _CAPACITY.search(low)
    if m is None:
        return None
    cf = m.group(1) or m.group(2)
    assumptions.append(f"token-dropping MoE: capacity factor {cf}, buffers padded to capacity (notes)")
    return RoutingSpec(capacity_factor=float(cf), pad_to_capacity=True)


def _training_of(row: dict, assumptions: list) -> TrainingSpec:
    if row["n_devices"] is None:
        raise RowError("n_devices blank")
    if row["global_batch"] is None:
        raise RowError("global_batch blank")
    if not row["dtype"]:
        assumptions.append("dtype blank: bf16 assumed")
    try:
        routing = _routing_of(row.get("notes") or "", assumptions) if row.get("moe_experts") else None
        return TrainingSpec(seq_len=row["seq_len"], global_batch=row["global_batch"], dtype=row["dtype"] or "bf16",
                            moe_routing=routing)
    except Exception as err:
        raise RowError(f"training columns invalid: {err}".splitlines()[0]) from None


def case_from_row(row: dict, line: int, profiles: Optional[dict] = None) -> Case:
    """A Case from a typed published-runs row; RowError with the reason when it cannot be predicted. `profiles`:
    hardware_from_row's."""
    notes = row.get("notes") or ""
    if notes.strip().upper().startswith("UNUSABLE"):
        raise RowError(notes.strip().split(".")[0].strip())
    assumptions: list = []
    hw = hardware_from_row(row, profiles)
    model = model_from_row(row, assumptions)
    stage_layers, model = stage_layers_of_notes(notes, model, assumptions)
    training = _training_of(row, assumptions)
    inferred = frozenset(f.strip() for f in (row.get("inferred") or "").split(";") if f.strip())
    known = recipe_layout(notes, known_layout(row, model, assumptions), assumptions, inferred, row["n_devices"])
    fw = row_framework(row)
    facts, overrides = framework_facts(row, fw, hw.family)
    fw, known, overrides = _recompute_modules(notes, fw, known, overrides, assumptions)
    fw, remat = remat_override(fw, notes)
    fw, dispatch = dispatch_override(fw, notes)
    fw, flex = flex_backend_override(fw, notes)
    dispatch = dispatch + flex
    fw, tp_scope = tp_scope_override(fw, notes)
    fw, graphs = cuda_graph_override(fw, notes)
    fw, grad_reduce = grad_reduce_override(fw, notes, hw.family)
    fw, grad_ar = grad_all_reduce_override(fw, notes)
    grad_reduce = grad_reduce + grad_ar
    fw, attn_bwd = attention_bwd_override(fw, notes)
    overrides = overrides + remat + dispatch + tp_scope + graphs + grad_reduce + attn_bwd
    mb, policy = blank_field_policy(fw, known, row["global_batch"])
    if mb is not None:
        known["micro_batch"] = mb
        assumptions.append(f"micro_batch blank: {mb} by {fw.name}'s rule {fw.defaults.micro_batch_rule}")
    filled = framework_default_fill(fw, known)
    if filled:
        policy += "; preset defaults for " + ", ".join(f"{k}={v}" for k, v in filled.items())
        assumptions.append(f"blank cells filled from {fw.name}'s defaults: "
                           + ", ".join(f"{k}={v}" for k, v in filled.items()))
    eval_per_step = eval_sequences_per_step(notes, training, assumptions)
    return Case(id=row["id"], line=line, source=row.get("source") or "", metric=row["metric"],
                measured=row["value"], convention=row.get("flops_convention") or None,
                peak_tflops_used=row["peak_tflops_used"], model=model, hardware=hw, training=training,
                num_devices=row["n_devices"], known=known, convention_embedding=bool(_CONV_EMBEDDING.search(notes.lower())),
                assumptions=tuple(assumptions), eval_sequences_per_step=eval_per_step, framework=fw,
                overrides=overrides, policy=policy, stage_layers=stage_layers, **facts)


def vtrain_case(kind: str, cells: list[str], index: int, line: int, hw: HardwareProfile) -> Case:
    """A Case from one vTrain ground-truth record (all layout fields known)."""
    vals = parse_vtrain_row(kind, cells, line)
    h, a, L, s = vals["hidden size"], vals["attention heads"], vals["# layers"], vals["sequence length"]
    try:
        model = ModelSpec(name=f"vtrain-gpt-{L}l-{h}h", source="vTrain ground truth (GPT, 4h MLP, MHA)",
                          num_layers=L, hidden_size=h, num_heads=a, ffn_hidden_size=4 * h, vocab_size=50257,
                          max_seq_len=s)
        training = TrainingSpec(seq_len=s, global_batch=vals["global batch"], dtype="fp16")
    except Exception as err:  # pydantic ValidationError: one line, the field and the rule
        errs = err.errors() if hasattr(err, "errors") else []
        why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in errs[:2]) or str(err)
        raise RowError(f"line {line}: the model columns do not form a valid model ({why[:300]})") from None
    known = {"tp": vals["tensor parallelism"], "pp": vals["pipeline parallelism"], "dp": vals["data parallelism"],
             "ep": 1, "cp": 1, "vpp": 1, "micro_batch": vals["micro batch"], "zero_stage": 0, "recompute": "full",
             "sequence_parallel": 0}
    short = "multi" if kind == "vtrain-multi" else "single"
    return Case(id=f"vtrain-{short}-{index}", line=line, source=VTRAIN_SOURCE[short], metric="step_time_s",
                measured=vals["iteration time (ms)"] / 1000.0, convention=None, peak_tflops_used=None, model=model,
                hardware=hw, training=training, num_devices=vals["# GPUs"], known=known, flash_attention=False,
                overlap_grad_reduce=False, dp_param_gather_overlap=False, tp_comm_overlap=False,
                convention_embedding=False, framework=_framework_for("megatron-lm", 2021),
                policy="vTrain: every layout field stated")


def vtrain_hardware() -> HardwareProfile:
    """A100 80GB, 8 per node, 800 Gb/s scale-out per node (vTrain's defaults; data README sec. 4)."""
    return override_hardware(load_hardware("a100-sxm4-80gb"), scaleout_gb_per_s=800.0 / 8.0 / 8.0)


def skipped(rid: str, line: int, reason: str, cells: list, header: Optional[list], kind: str) -> RowResult:
    """The RowResult of a row that cannot become a Case (metric, value, source and profile as far as readable)."""
    metric, measured, source, hwname = "step_time_s", None, "", ""
    if header is not None and len(cells) == len(header):
        d = dict(zip(header, (c.strip() for c in cells)))
        metric, source, hwname = d.get("metric", ""), d.get("source", ""), d.get("hardware_profile", "")
        try:
            measured = float(d.get("value", ""))
        except ValueError:
            measured = None
    elif kind.startswith("vtrain"):
        source = VTRAIN_SOURCE["multi" if kind == "vtrain-multi" else "single"]
    return RowResult(id=rid, metric=metric, measured=measured, status="skipped", reason=reason, line=line,
                     source=source, hardware=hwname)


#: Recipe facts keyed by row id (the run's framework configuration at a named commit), added to the row's notes.
RECIPE_NOTES_FILE = Path(__file__).with_name("recipe_notes.yaml")


@lru_cache(maxsize=1)
def recipe_notes() -> dict:
    """Row id -> recipe facts (recipe_notes.yaml): what a run's own performance-recipe file sets that the runs file
    does not record. Source: each entry names its recipe file and commit."""
    from ..specs import safe_yaml
    data = safe_yaml.read_yaml(RECIPE_NOTES_FILE, "recipe notes")
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def with_recipe_notes(row: dict, facts: Optional[dict] = None) -> dict:
    """`row` with its recipe facts (recipe_notes, or `facts` read from it once per file) appended to its notes,
    once; the row says so in its notes."""
    extra = (recipe_notes() if facts is None else facts).get(str(row.get("id", "")).strip())
    notes = row.get("notes") or ""
    if not extra or extra in notes:
        return row
    return {**row, "notes": f"{notes.rstrip()} {extra} [recipe facts: simulator/validation/recipe_notes.yaml]"}


def load_cases(path: str | Path) -> tuple[str, list]:
    """(file kind, list of Case or RowResult-skips in file order) of a runs file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"runs file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err})") from None
    header, recs = records(text)
    kind = detect_kind(header)
    items = []
    vt_hw = vtrain_hardware() if kind.startswith("vtrain") else None
    facts, profiles = (recipe_notes(), {}) if kind == "published" else (None, None)
    for idx, (line, cells) in enumerate(recs, start=1):
        rid = f"{kind}-{idx}" if kind.startswith("vtrain") else (cells[0].strip() if cells else f"line-{line}")
        try:
            if kind == "published":
                items.append(case_from_row(with_recipe_notes(parse_published_row(header, cells, line), facts), line,
                                           profiles))
            else:
                items.append(vtrain_case(kind, cells, idx, line, vt_hw))
        except RowError as err:
            items.append(skipped(rid, line, str(err), cells, header if kind == "published" else None, kind))
    return kind, items
