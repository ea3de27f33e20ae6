"""Pure cost functions shared by the analytic and discrete-event engines (arrays over a table of layouts).

sizes.py          the job and its layouts as arrays (parallel degrees, tokens, bytes, strides, DP groups)
flops.py          parameter and FLOP counts of the model
compute.py        kernel time: GEMM saturation curve, memory-bound streaming (KernelRates)
layer.py          one layer's per-op and per-pass times (LayerCosts)
communication.py  exposed TP/EP/CP per layer, pipeline sends, DP/ZeRO per step, the DP groups
params.py         parameters per rank kind
memory.py         model states under ZeRO, activations, logits
stage.py          first / middle / last rank: host work, logits, per-micro-batch times, memory
optimizer.py      the optimizer step
Standalone models not yet composed by the engines: kernels.py / kernel_data.py (measured kernel tables),
framework_effects.py, moe_routing.py, compression.py, offload.py.
"""
