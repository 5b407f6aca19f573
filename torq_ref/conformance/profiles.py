"""Conformance profiles: the legitimate variants a kernel may implement (spec/CF.md section 2).

A profile fixes the scale rule whose golden group is "valid" for the kernel, which "acceptable"
flags (documented implementation differences) count as acceptable rather than failures, which
other scale rules are acceptable, and the accumulation precision assumed for dot_scaled.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from torq_ref.errors import UserError
from torq_ref.mx.formats import AMAX_RULES


class ProfileError(UserError, ValueError):
    """Unknown profile name or inconsistent profile."""


@dataclass(frozen=True)
class Profile:
    """One profile: the scale rule whose golden group is valid (CF-2.1) and the flags and rules
    that count as acceptable (CF-2.2)."""

    name: str
    scale_rule: str
    description: str
    acceptable_flags: frozenset = frozenset({"NanElementCode", "InfScaleSatfinite"})
    acceptable_rules: tuple = ()
    #: unit roundoff of the accumulator assumed by dot_scaled (float32: 2^-24)
    accumulate_u: float = 2.0 ** -24
    evidence: str = ""
    extra: dict = field(default_factory=dict)
    #: "exact" (spec: -0 stays -0) or "acceptable": a block or element whose only difference is
    #: +0 written for a negative value that rounds to zero counts as acceptable (CF-2.4)
    signed_zero: str = "exact"
    #: NVFP4 tensor-scale convention (CF-2.5): "decode" (the kernel gets g, MX-9.2; g is the
    #: amax rule's, MX-9.5), "reciprocal" (the kernel gets g_enc = fp32(1 / g), MX-9.4) or "none"
    #: (no tensor scale: the kernel gets 1.0 and MX-9.5's rule "none" is expected)
    nvfp4_global: str = "decode"
    #: Hadamard convention of the hadamard kind (CF-5.2): norm, row order, side of the product
    hadamard_norm: str = "orthonormal"
    hadamard_order: str = "natural"
    hadamard_side: str = "right"
    #: rounding mode of the scalar fp32 -> E8M0 cast the e8m0-cast kind expects (MX-4.10)
    e8m0_cast: str = "nearest"
    #: the block-scale layout the swizzle kind expects (CF-3.13): cuBLAS' 128 x 4 (MX-8.2) or a
    #: vendor layout of MX-8.4 .. MX-8.10, set with the option +layout-NAME
    scale_layout: str = "cublas-128x4"
    #: the accumulation model (MX-12.1) a dot_scaled kernel claims, set with +model-NAME: its
    #: MX-12.2 bound replaces CF-3.6's (CF-3.15); "" keeps CF-3.6
    accumulation_model: str = ""
    #: "rule" (the profile's scale rule is expected) or "own" (+own-scale, CF-3.16: an MX block's
    #: scale byte is the kernel's choice, its codes are judged under it)
    scale_judging: str = "rule"


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("ocp", "floor",
            "OCP MX v1.0 section 6.3: FLOOR scale, round-to-nearest-even saturating elements, "
            "NaN scale (0xFF) for a NaN or Inf block.",
            evidence="OCP MX v1.0; microxcaling; torchao default"),
    Profile("nvidia", "rceil",
            "NVIDIA hardware / cuBLAS / TransformerEngine: RCEIL scale (cvt.rp.satfinite.ue8m0x2), "
            "satfinite (Inf block -> 0xFE, acceptable); the E8M0 cast rounds up with saturation "
            "(__nv_cvt_float_to_e8m0, cudaRoundPosInf).",
            e8m0_cast="ceil-satfinite",
            evidence="PTX cvt.rp.satfinite.ue8m0x2.f32; cuBLAS block-scaled GEMM docs"),
    Profile("torchao", "floor",
            "torchao to_mx with ScaleCalculationMode.FLOOR (its default).",
            evidence="torchao 0.18 torchao/prototype/mx_formats/mx_tensor.py"),
    Profile("torchao-rceil", "rceil", "torchao to_mx with ScaleCalculationMode.RCEIL.",
            evidence="torchao 0.18"),
    Profile("ceil", "ceil", "torchao ScaleCalculationMode.CEIL.", evidence="torchao 0.18"),
    Profile("even", "even", "torchao ScaleCalculationMode.EVEN; vLLM's CUTLASS MXFP4 path.",
            evidence="torchao 0.18; vLLM"),
    Profile("vllm-cutlass-moe", "cutlass",
            "vLLM's CUTLASS MXFP4 (W4A4) MoE kernel: the E8M0 code is the biased exponent of the "
            "float32 amax after adding 2^21 to its bit pattern, minus emax (MX-4.9): the exponent "
            "goes up at m >= 1.75, so amax / scale lies in [4, 7) and a block with m in (1.5, 1.75) "
            "saturates its largest element to 6; checked on mx_scale_rules.json (GV-2.7).",
            evidence="vLLM PR 43557 (the fixed CUTLASS MoE E8M0 computation)"),
    Profile("mse", "mse",
            "The software MSE scale rule (MX-4.8): per block FLOOR's code or FLOOR + 1, whichever "
            "quantized block has the smaller squared error (ties keep FLOOR); the small e2m1 MSE "
            "group of mx_quantize.json (GV-2.6), no bulk vectors.",
            evidence="torq-ref's software rule; spec/MX.md MX-4.8"),
    Profile("nvfp4-reciprocal", "floor",
            "NVFP4 with the reciprocal tensor scale: the kernel gets g_enc = fp32(1 / g) "
            "(448 * 6 / amax, compressed-tensors' global_scale) and multiplies by it (MX-9.4).",
            nvfp4_global="reciprocal",
            evidence="compressed-tensors 0.20 quantization/utils/helpers.py generate_gparam"),
    Profile("any-rule", "floor",
            "FLOOR is valid; the same block under RCEIL, CEIL or EVEN is acceptable "
            "(ScaleRuleVariant). For kernels whose rule is unknown.",
            acceptable_rules=tuple(r for r in AMAX_RULES if r != "floor")),
]}


#: options a profile name may carry after "+" (CF-2.4): name -> Profile field values
OPTIONS = {"unsigned-zero": {"signed_zero": "acceptable"},
           "unnormalized": {"hadamard_norm": "unnormalized"},       # CF-5.2: hadamard kind only
           "sequency": {"hadamard_order": "sequency"},
           "left": {"hadamard_side": "left"},
           "cast-nearest": {"e8m0_cast": "nearest"}, "cast-floor": {"e8m0_cast": "floor"},
           "cast-ceil-satfinite": {"e8m0_cast": "ceil-satfinite"},
           "no-tensor-scale": {"nvfp4_global": "none"},                # CF-2.5: NVFP4 only
           "own-scale": {"scale_judging": "own"}}                      # CF-3.16: MX blocks
#: CF-3.13: the swizzle kind's layout, e.g. "ocp+layout-triton-hopper"
OPTIONS.update({f"layout-{name}": {"scale_layout": name} for name in (
    "cublas-128x4", "triton-hopper", "triton-blackwell", "triton-cdna4", "aiter-e8m0-shuffle",
    "aiter-moe-a16w4")})
#: CF-3.15: the dot_scaled kind's claimed accumulation model, e.g. "ocp+model-bf16-upcast"
OPTIONS.update({f"model-{name}": {"accumulation_model": name}
                for name in ("exact", "fp32-kblock", "bf16-upcast")})


def get_profile(profile) -> Profile:
    """A Profile, a profile name, or a name with options: "ocp+unsigned-zero"."""
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise ProfileError(f"profile must be a name or a Profile, got {type(profile).__name__}")
    base, *opts = profile.split("+")
    if base not in PROFILES:
        raise ProfileError(f"unknown profile {base!r}; known: {', '.join(PROFILES)}")
    p = PROFILES[base]
    for o in opts:
        if o not in OPTIONS:
            raise ProfileError(f"unknown profile option {o!r} in {profile!r}; known: {', '.join(OPTIONS)}")
        p = replace(p, name=f"{p.name}+{o}", **OPTIONS[o])
    return p


def with_accumulate_u(profile, accumulate_u=None) -> Profile:
    """The profile with the dot_scaled accumulator unit roundoff replaced (CF-3.6); None keeps it."""
    p = get_profile(profile)
    if accumulate_u is None:
        return p
    u = accumulate_u
    if isinstance(u, bool) or not isinstance(u, (int, float)) or not (0 < float(u) < 1):
        raise ProfileError(f"accumulate_u must be a number in (0, 1), got {accumulate_u!r}")
    return replace(p, accumulate_u=float(u))
