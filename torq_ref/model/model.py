"""The decoder: weights, ``load`` and ``Model.forward`` (spec/FW.md sections 1-3 and 9).

Layer equations are the pure functions of :mod:`torq_ref.model.layers`; this module only wires
them, holding q/k/v and gate/up as fused matrices because each pair shares one input site
(hooks.SITES). All matmuls are 2-D BLAS calls on (tokens, features) arrays; no Python loop runs
over tokens.

One decoder serves the four families of :mod:`torq_ref.model.config` (FW-9.1). Norm weights are
held as the effective per-channel multiplier of the normalized row: Gemma's ``(1 + w)`` is
resolved here at load time (FW-9.3), so ``LayerWeights.attn_norm`` / ``mlp_norm`` mean the same
for every family: the multiplier whose output feeds the qkv / gate_up site.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import layers as L
from .capture import ActivationCapture
from .config import SLIDING, ModelConfig, read_config
from .errors import ModelError
from .hooks import SITES, PreparedSite, QuantPlan, prepare_site

#: windows per batched layer call of the layer-streaming engine (bounds the attention and MLP
#: temporaries; part of what fixes the float32 bits of a forward, so the FP32 reference cache
#: names it, spec/TQ.md TQ-6.8)
WINDOW_BATCH = 4
from .weights import check_tensors, read_tensors, weight_files


@dataclass
class LayerWeights:
    attn_norm: np.ndarray            # (D,) multiplier of the norm that feeds the qkv site
    mlp_norm: np.ndarray             # (D,) multiplier of the norm that feeds the gate_up site
    qkv: np.ndarray                  # (H*d + 2*K*d, D): q_proj, k_proj, v_proj stacked by rows
    o: np.ndarray                    # (D, H*d)
    gate_up: np.ndarray              # (2F, D): gate_proj then up_proj
    down: np.ndarray                 # (D, F)
    q_norm: np.ndarray | None = None  # (d,) Qwen3, Gemma3
    k_norm: np.ndarray | None = None  # (d,) Qwen3, Gemma3
    qkv_bias: np.ndarray | None = None        # (H*d + 2*K*d,) Qwen2: added after the qkv matmul
    post_attn_norm: np.ndarray | None = None  # (D,) Gemma3: on the attention output
    post_mlp_norm: np.ndarray | None = None   # (D,) Gemma3: on the MLP output

    def site_weight(self, site: str) -> np.ndarray:
        return {"qkv": self.qkv, "o": self.o, "gate_up": self.gate_up, "down": self.down}[site]


def _norm_multiplier(w: np.ndarray, family: str) -> np.ndarray:
    """The per-channel multiplier of a stored norm weight: Gemma's 1 + w (in the compute dtype,
    as transformers adds it in float32), else w itself (FW-9.3)."""
    return (w.dtype.type(1) + w) if family == "gemma3" else w


@dataclass(frozen=True)
class RopeTables:
    """RoPE cos / sin tables (S, d) for one sequence length, one pair per kind of layer
    (``"default"``; Gemma3 adds ``"local"`` for its sliding-window layers)."""

    seq_len: int
    tables: dict

    def for_layer(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        return self.tables[kind]


class Model:
    """A Llama / Qwen3 / Qwen2 / Gemma3 decoder in NumPy. Build with :func:`load` or :meth:`from_tensors`."""

    def __init__(self, config: ModelConfig, tensors: dict[str, np.ndarray], dtype=np.float32,
                 path: Path | None = None, *, consume: bool = False):
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ModelError(f"dtype {self.dtype} unsupported: float32 or float64")
        self.path = path
        check_tensors(tensors, config)
        # consume=True (load) empties the caller's dict so fused copies do not double peak memory
        t = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in tensors.items()}
        if consume:
            tensors.clear()
        fam = config.family
        self.embed = t["model.embed_tokens.weight"]                                  # (V, D)
        tied = config.tie_word_embeddings or "lm_head.weight" not in t
        self.lm_head = self.embed if tied else t["lm_head.weight"]                  # (V, D)
        self.final_norm = _norm_multiplier(t["model.norm.weight"], fam)
        # Gemma3 multiplies the embedding rows by sqrt(D) rounded to float32, as transformers does
        self.embed_scale = (self.dtype.type(np.float32(np.sqrt(config.hidden_size)))
                            if fam == "gemma3" else None)                           # (FW-9.4)
        self.layers: list[LayerWeights] = []
        for i in range(config.num_layers):
            p = f"model.layers.{i}."
            gemma = fam == "gemma3"
            self.layers.append(LayerWeights(
                attn_norm=_norm_multiplier(t[p + "input_layernorm.weight"], fam),
                mlp_norm=_norm_multiplier(t[p + ("pre_feedforward_layernorm.weight" if gemma
                                                 else "post_attention_layernorm.weight")], fam),
                qkv=np.concatenate([t[p + f"self_attn.{n}_proj.weight"] for n in "qkv"], axis=0),
                o=t[p + "self_attn.o_proj.weight"],
                gate_up=np.concatenate([t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"]], axis=0),
                down=t[p + "mlp.down_proj.weight"],
                q_norm=_norm_multiplier(t[p + "self_attn.q_norm.weight"], fam) if fam in ("qwen3", "gemma3") else None,
                k_norm=_norm_multiplier(t[p + "self_attn.k_norm.weight"], fam) if fam in ("qwen3", "gemma3") else None,
                qkv_bias=(np.concatenate([t[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
                          if config.attention_bias else None),
                post_attn_norm=_norm_multiplier(t[p + "post_attention_layernorm.weight"], fam) if gemma else None,
                post_mlp_norm=_norm_multiplier(t[p + "post_feedforward_layernorm.weight"], fam) if gemma else None,
            ))
            for n in ("q", "k", "v"):
                t.pop(p + f"self_attn.{n}_proj.weight")
            t.pop(p + "mlp.gate_proj.weight"), t.pop(p + "mlp.up_proj.weight")
        self.inv_freq = L.rope_inv_freq(config.head_dim, config.rope)                # (d/2,) float64
        self.inv_freq_local = (None if config.rope_local is None else
                               L.rope_inv_freq(config.head_dim, config.rope_local))  # Gemma3 local layers
        self._plan: QuantPlan | None = None
        self._prepared: dict[tuple[int, str], PreparedSite] = {}

    # ------------------------------------------------------------------ introspection
    def site_width(self, site: str) -> int:
        """Input width n of a site (qkv, gate_up: hidden; o: heads*head_dim; down: FFN width)."""
        c = self.config
        return {"qkv": c.hidden_size, "o": c.q_dim, "gate_up": c.hidden_size, "down": c.intermediate_size}[site]

    def site_weight(self, layer: int, site: str) -> np.ndarray:
        """The (out, n) weight fed by a site (q/k/v and gate/up stacked by rows)."""
        return self.layers[layer].site_weight(site)

    @property
    def bos_token_id(self) -> int | None:
        """The BOS id every window starts with, None when this model adds no BOS (FW-6.5)."""
        from .data import bos_token_id

        return bos_token_id(self)

    @property
    def add_bos(self) -> bool:
        """Whether windows for this model start with BOS (FW-6.5)."""
        return self.bos_token_id is not None

    def tokenizer(self):
        """The ``tokenizers.Tokenizer`` of the model directory (tokenizer.json)."""
        from tokenizers import Tokenizer

        if self.path is None or not (self.path / "tokenizer.json").is_file():
            raise ModelError("this model has no tokenizer.json")
        return Tokenizer.from_file(str(self.path / "tokenizer.json"))

    def with_layers(self, layers: list[LayerWeights]) -> "Model":
        """A copy of this model with other decoder-layer weights (same config, embeddings, norm,
        head; shared arrays) and its own, empty prepared-plan cache. Used for re-parameterized
        models such as the TORQ scale step."""
        if len(layers) != len(self.layers):
            raise ModelError(f"{len(layers)} layers given, the model has {len(self.layers)}")
        out = copy.copy(self)
        out.layers = list(layers)
        out._plan, out._prepared = None, {}
        return out

    # ------------------------------------------------------------------ quantization plan
    def prepare(self, plan: QuantPlan | None) -> None:
        """Precompute the weights of a plan (folding, weight RTN); forward() calls it lazily and
        reuses them while the same plan object is passed (FW-3.5)."""
        if plan is self._plan:
            return
        prepared = {}
        if plan is not None:
            for i, lw in enumerate(self.layers):
                for site in SITES:
                    q = plan.for_site(i, site)
                    if q is not None:
                        prepared[(i, site)] = prepare_site(lw.site_weight(site), q, plan.mode)
        self._plan, self._prepared = plan, prepared

    # ------------------------------------------------------------------ forward, by parts
    # forward() is embed_tokens -> block(0..L-1) -> head; an outside engine may call the parts
    # itself to stream the pass one decoder layer at a time (FW-2.8).
    def check_ids(self, ids) -> np.ndarray:
        """Token ids as an integer (B, S) array ((S,) is read as B = 1), range-checked (FW-2.5)."""
        ids = np.asarray(ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ModelError(f"ids must be an integer array (batch, seq); got {ids.dtype} {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ModelError(f"token ids must lie in [0, {self.config.vocab_size})")
        return ids

    def embed_tokens(self, ids) -> np.ndarray:
        """The residual stream entering layer 0: embedding rows of ids, (B, S, D), compute dtype."""
        ids = self.check_ids(ids)
        x = self.embed[ids]                                                           # (B, S, D)
        if self.embed_scale is not None:                                              # Gemma3 (FW-9.4)
            x *= self.embed_scale
        return x

    def rope_tables(self, seq_len: int) -> "RopeTables":
        """cos / sin tables (S, d) for positions 0..seq_len-1, what block() needs for RoPE."""
        pos = np.arange(int(seq_len))
        tables = {"default": L.rope_cos_sin(pos, self.inv_freq, self.dtype)}          # (S, d) each
        if self.inv_freq_local is not None and SLIDING in self.config.layer_types:
            tables["local"] = L.rope_cos_sin(pos, self.inv_freq_local, self.dtype)    # (FW-9.6)
        return RopeTables(int(seq_len), tables)

    def layer_prepared(self, i: int) -> dict[str, PreparedSite]:
        """{site: PreparedSite} of layer i under the plan set by prepare() (empty without one)."""
        return {site: p for site in SITES if (p := self._prepared.get((i, site))) is not None}

    def block(self, i: int, x: np.ndarray, rope: "RopeTables", capture: ActivationCapture | None = None,
              prepared: dict[str, PreparedSite] | None = None) -> np.ndarray:
        """Decoder layer i: residual stream (B, S, D) -> (B, S, D) (FW-2.6, FW-2.8).

        ``prepared``: {site: PreparedSite} for this layer (hooks.prepare_site); a site absent from
        it stays exact. None uses the model's own cache set by prepare(plan)."""
        if not 0 <= i < self.config.num_layers:
            raise ModelError(f"layer {i} out of range: the model has {self.config.num_layers}")
        if x.ndim != 3 or x.shape[1] != rope.seq_len:
            raise ModelError(f"block input {x.shape} does not match rope tables of length {rope.seq_len}")
        if prepared is None:
            prepared = self.layer_prepared(i)
        cos, sin = rope.for_layer(self.layer_rope_kind(i))
        return self._block(i, x, cos, sin, capture, prepared)

    def head(self, x: np.ndarray) -> np.ndarray:
        """Final norm and output projection: (B, S, D) -> logits (B, S, V)."""
        x = L.rms_norm(x, self.final_norm, self.config.rms_norm_eps)
        b, s, d = x.shape
        logits = (x.reshape(b * s, d) @ self.lm_head.T).reshape(b, s, -1)            # (B, S, V)
        cap = self.config.final_logit_softcapping
        if cap is not None:                                                          # (FW-9.7)
            logits = L.softcap(logits, cap)
        return logits

    def layer_rope_kind(self, i: int) -> str:
        """Key of the RoPE table layer i uses in :class:`RopeTables` (Gemma3 sliding layers: local)."""
        return "local" if self.config.layer_type(i) == SLIDING and self.inv_freq_local is not None else "default"

    # ------------------------------------------------------------------ forward
    def forward(self, ids, quant: QuantPlan | None = None,
                capture: ActivationCapture | None = None) -> np.ndarray:
        """Logits (B, S, V) of token ids (B, S) (or (S,), treated as B = 1), causal (FW-2.5)."""
        x = self.embed_tokens(ids)                                                   # (B, S, D)
        self.prepare(quant)
        rope = self.rope_tables(x.shape[1])
        for i in range(self.config.num_layers):
            x = self.block(i, x, rope, capture)
        return self.head(x)                                                          # (B, S, V)

    __call__ = forward

    def _linear(self, i: int, site: str, x: np.ndarray, capture, prepared) -> np.ndarray:
        """x (B, S, n) -> (B, S, out) through a site: capture, transform + quantizer, matmul."""
        b, s, n = x.shape
        x2 = x.reshape(b * s, n)                                                      # (T, n)
        if capture is not None:
            capture.record(i, site, x2)
        prep = prepared.get(site)
        if prep is None:
            w = self.layers[i].site_weight(site)
        else:
            x2, w = prep.input(x2), prep.weight
        return (x2 @ w.T).reshape(b, s, -1)

    def _block(self, i: int, x: np.ndarray, cos, sin, capture, prepared) -> np.ndarray:
        """One decoder layer (FW-2.6, FW-9.2 .. FW-9.6): pre-norm attention and gated MLP with
        residuals; Qwen2 adds q/k/v biases, Gemma3 also normalizes each branch's output."""
        c, lw = self.config, self.layers[i]
        eps = c.rms_norm_eps
        h = L.rms_norm(x, lw.attn_norm, eps)                                         # (B, S, D)
        qkv = self._linear(i, "qkv", h, capture, prepared)                           # (B, S, Hd+2Kd)
        if lw.qkv_bias is not None:                                                  # Qwen2
            qkv += lw.qkv_bias
        q, k, v = np.split(qkv, [c.q_dim, c.q_dim + c.kv_dim], axis=-1)
        q = L.split_heads(q, c.num_heads, c.head_dim)                                # (B, H, S, d)
        k = L.split_heads(k, c.num_kv_heads, c.head_dim)                             # (B, K, S, d)
        v = L.split_heads(v, c.num_kv_heads, c.head_dim)                             # (B, K, S, d)
        if lw.q_norm is not None:                                                    # Qwen3, Gemma3
            q = L.rms_norm(q, lw.q_norm, eps)
            k = L.rms_norm(k, lw.k_norm, eps)
        q, k = L.apply_rope(q, cos, sin), L.apply_rope(k, cos, sin)
        window = c.sliding_window if c.layer_type(i) == SLIDING else None
        a = L.merge_heads(L.causal_attention(q, k, np.ascontiguousarray(v), scale=c.attn_scale,
                                             window=window))                         # (B, S, Hd)
        a = self._linear(i, "o", a, capture, prepared)                               # (B, S, D)
        if lw.post_attn_norm is not None:                                            # Gemma3
            a = L.rms_norm(a, lw.post_attn_norm, eps)
        x = x + a
        h = L.rms_norm(x, lw.mlp_norm, eps)
        gate, up = np.split(self._linear(i, "gate_up", h, capture, prepared), 2, axis=-1)  # (B, S, F) each
        act = L.geglu_tanh(gate, up) if c.hidden_act == "gelu_tanh" else L.swiglu(gate, up)
        m = self._linear(i, "down", act, capture, prepared)                          # (B, S, D)
        if lw.post_mlp_norm is not None:                                             # Gemma3
            m = L.rms_norm(m, lw.post_mlp_norm, eps)
        return x + m

    @classmethod
    def from_tensors(cls, config: ModelConfig, tensors: dict[str, np.ndarray], dtype=np.float32) -> "Model":
        return cls(config, tensors, dtype)


def load(path: str | Path, dtype=np.float32) -> Model:
    """Load a Hugging Face layout directory (config.json + safetensors [+ tokenizer.json]) (FW-1.1)."""
    d = Path(path)
    if not d.is_dir():
        if d.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".safetensors", ".gguf"):
            from .errors import WeightsFormatError
            raise WeightsFormatError(
                f"{d}: load() takes a model directory; pickle files are refused and GGUF files go "
                f"through import_gguf() first")
        raise ModelError(f"{d} is not a model directory")
    config = read_config(d)
    tensors = read_tensors(weight_files(d), dtype=dtype)
    return Model(config, tensors, dtype=dtype, path=d, consume=True)
