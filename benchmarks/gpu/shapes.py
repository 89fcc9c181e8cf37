"""Model shapes of the GPU benchmark, written as data, and the model-FLOPs count behind its MFU figures.

The realistic pairs copy the published configs of Qwen2.5-1.5B / Qwen2.5-0.5B and Gemma-3-1B /
Gemma-3-270M (only the fields that set the shape and the arithmetic); the weights are random, so
nothing is downloaded. The tiny pairs keep the architectures and shrink every size, for the CPU run.
"""

from __future__ import annotations

_QWEN_COMMON = dict(model_type="qwen2", vocab_size=151936, hidden_act="silu", rms_norm_eps=1e-6,
                    rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                    use_sliding_window=False)
QWEN25_1_5B = dict(_QWEN_COMMON, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                   num_attention_heads=12, num_key_value_heads=2)
QWEN25_0_5B = dict(_QWEN_COMMON, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                   num_attention_heads=14, num_key_value_heads=2)


def _gemma_layers(n: int) -> list[str]:
    """Gemma 3: five sliding-window layers, then one global one."""
    return ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]


_GEMMA_COMMON = dict(model_type="gemma3_text", vocab_size=262144, head_dim=256, num_key_value_heads=1,
                     num_attention_heads=4, sliding_window=512, query_pre_attn_scalar=256,
                     rope_theta=1000000.0, rope_local_base_freq=10000.0, rms_norm_eps=1e-6,
                     hidden_activation="gelu_pytorch_tanh", max_position_embeddings=32768,
                     tie_word_embeddings=True)
GEMMA3_1B = dict(_GEMMA_COMMON, hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
                 layer_types=_gemma_layers(26))
GEMMA3_270M = dict(_GEMMA_COMMON, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                   layer_types=_gemma_layers(18))

# name -> (teacher config, student config)
PAIRS = {
    "qwen2.5-1.5b->0.5b": (QWEN25_1_5B, QWEN25_0_5B),
    "gemma3-1b->270m": (GEMMA3_1B, GEMMA3_270M),
}
TINY_PAIRS = {
    "tiny-qwen2": (dict(_QWEN_COMMON, vocab_size=512, hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512),
                   dict(_QWEN_COMMON, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)),
    "tiny-gemma3": (dict(_GEMMA_COMMON, vocab_size=1024, head_dim=16, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=6, sliding_window=16, query_pre_attn_scalar=16,
                         max_position_embeddings=512, layer_types=_gemma_layers(6)),
                    dict(_GEMMA_COMMON, vocab_size=1024, head_dim=16, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, sliding_window=16, query_pre_attn_scalar=16,
                         max_position_embeddings=512, layer_types=["sliding_attention", "full_attention"])),
}

H200_BF16_PEAK = 790e12
"""bf16 dense matrix rate measured on this workplace's H200s (8192^3 products on random data,
769-798 TFLOP/s; /work/.library/device/KINDS.md), the MFU denominator."""


def _head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def body_params(cfg: dict) -> int:
    """Parameters that every token multiplies through: attention and MLP projections (norms and biases
    are negligible; the embedding is a lookup; the LM head is counted per response position)."""
    h, hd = cfg["hidden_size"], _head_dim(cfg)
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * cfg["intermediate_size"]
    return cfg["num_hidden_layers"] * per_layer


def _mean_context(seq: int, window: int | None) -> float:
    """Mean number of keys a query attends to under a causal (optionally sliding) mask."""
    if window is None or window >= seq:
        return (seq + 1) / 2
    return (window * (window + 1) / 2 + (seq - window) * window) / seq


def forward_flops(cfg: dict, seq: int, n_seqs: int, head_positions: int) -> float:
    """One forward pass: 2 FLOPs per multiply-add through the body for every token, the attention
    scores and weighted sums (QK^T and AV), and the LM head on ``head_positions`` positions."""
    q = cfg["num_attention_heads"] * _head_dim(cfg)
    types = cfg.get("layer_types") or ["full_attention"] * cfg["num_hidden_layers"]
    attn = sum(4 * q * _mean_context(seq, cfg["sliding_window"] if t == "sliding_attention" else None)
               for t in types)
    tokens = seq * n_seqs
    return 2 * body_params(cfg) * tokens + attn * tokens + 2 * cfg["hidden_size"] * cfg["vocab_size"] * head_positions


def step_model_flops(student: dict, teacher: dict | None, seq: int, n_seqs: int, response_positions: int) -> float:
    """Model FLOPs of one distillation step: student forward + backward (3x forward), and the teacher's
    forward when it runs in the step (None: top-k cache). The LM heads count on response positions only:
    the loss needs nothing else, so logits computed elsewhere (as TRL does) are not useful work."""
    flops = 3 * forward_flops(student, seq, n_seqs, response_positions)
    if teacher is not None:
        flops += forward_flops(teacher, seq, n_seqs, response_positions)
    return flops
