"""One small pure function per equation of the decoder (spec/FW.md section 2).

Follows the Hugging Face transformers Llama / Qwen3 forward pass as summarised in
docs/model-and-data.md section 4. Shapes: B batch, S sequence, D hidden, H query heads,
K key/value heads, G = H / K, d head dim, F FFN width, V vocabulary. The compute dtype is the
dtype of the inputs (float32 by default, float64 on request).
"""
from __future__ import annotations

import math

import numpy as np

from .config import RopeConfig


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """FW-2.1: x / sqrt(mean(x^2) + eps) * weight over the last axis (at least float32)."""
    dt = np.result_type(x.dtype, np.float32)
    xf = x.astype(dt, copy=False)
    var = np.mean(xf * xf, axis=-1, keepdims=True)            # (..., 1)
    return weight * (xf / np.sqrt(var + dt.type(eps))).astype(x.dtype, copy=False)


def rope_inv_freq(head_dim: int, rope: RopeConfig) -> np.ndarray:
    """FW-2.2: inverse frequencies theta^(-2i/d), i < d/2, with llama3 scaling when configured (float64)."""
    inv = 1.0 / rope.theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)   # (d/2,)
    if rope.rope_type == "llama3":
        wavelen = 2 * math.pi / inv
        low_wl = rope.original_max_position_embeddings / rope.low_freq_factor
        high_wl = rope.original_max_position_embeddings / rope.high_freq_factor
        smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) / (
            rope.high_freq_factor - rope.low_freq_factor)
        blended = (1 - smooth) * inv / rope.factor + smooth * inv
        inv = np.where(wavelen > low_wl, inv / rope.factor, np.where(wavelen < high_wl, inv, blended))
    return inv


def rope_cos_sin(positions: np.ndarray, inv_freq: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """FW-2.2: cos / sin tables (S, d); angles in float64, halves repeated (rotate_half layout)."""
    ang = np.outer(positions.astype(np.float64), inv_freq)   # (S, d/2)
    ang = np.concatenate([ang, ang], axis=-1)                 # (S, d)
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)


def rotate_half(x: np.ndarray) -> np.ndarray:
    """(x1, x2) -> (-x2, x1) on the two halves of the last axis (not interleaved)."""
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """FW-2.2: x * cos + rotate_half(x) * sin; x (B, heads, S, d), cos/sin (S, d)."""
    return x * cos + rotate_half(x) * sin


def split_heads(x: np.ndarray, n_heads: int, head_dim: int) -> np.ndarray:
    """(B, S, n*d) -> (B, n, S, d)."""
    b, s, _ = x.shape
    return x.reshape(b, s, n_heads, head_dim).transpose(0, 2, 1, 3)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, n, S, d) -> (B, S, n*d)."""
    b, n, s, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, s, n * d)


def causal_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float | None = None,
                     window: int | None = None) -> np.ndarray:
    """FW-2.3: softmax(q k^T * scale + causal mask) v with grouped KV heads (causal, rows
    independent: FW-2.7).

    q (B, H, S, d); k, v (B, K, S, d); query head j reads KV head j // (H / K). ``scale`` defaults
    to d^-0.5; with ``window`` W a query at position t sees only keys t - W < s <= t (FW-9.6).
    Returns (B, H, S, d).
    """
    b, h, s, d = q.shape
    kv = k.shape[1]
    g = h // kv
    qg = q.reshape(b, kv, g * s, d)                           # (B, K, G*S, d): heads of a group stacked
    scores = qg @ k.transpose(0, 1, 3, 2)                     # (B, K, G*S, S)
    scores *= q.dtype.type(d ** -0.5 if scale is None else scale)
    scores = scores.reshape(b, kv, g, s, s)                   # (B, K, G, S, S)
    scores += causal_mask(s, scores.dtype, window)            # -inf where the key is not visible
    probs = softmax(scores)
    out = probs.reshape(b, kv, g * s, s) @ v                  # (B, K, G*S, d)
    return out.reshape(b, h, s, d)


def causal_mask(s: int, dtype, window: int | None = None) -> np.ndarray:
    """(S, S) additive mask: 0 where key s' is visible from query t (s' <= t, and t - s' < window
    when a window is given), -inf elsewhere."""
    m = np.triu(np.full((s, s), -np.inf, dtype=dtype), k=1)
    if window is not None:
        m += np.tril(np.full((s, s), -np.inf, dtype=dtype), k=-int(window))
    return m


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in place on a float array."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), written to avoid overflow warnings for large negative x."""
    return x / (1 + np.exp(-np.clip(x, -80, None)))


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """FW-2.4: silu(gate) * up; (.., F) each."""
    return silu(gate) * up


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """FW-9.5: the tanh approximation of GELU (transformers' gelu_pytorch_tanh):
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    c = x.dtype.type(math.sqrt(2.0 / math.pi))
    return x.dtype.type(0.5) * x * (1 + np.tanh(c * (x + x.dtype.type(0.044715) * (x * x * x))))


def geglu_tanh(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """FW-9.5: gelu_tanh(gate) * up; (.., F) each (Gemma3's MLP)."""
    return gelu_tanh(gate) * up


def softcap(x: np.ndarray, cap: float) -> np.ndarray:
    """FW-9.7: cap * tanh(x / cap)."""
    c = x.dtype.type(cap)
    return np.tanh(x / c) * c
