"""The flags of the golden vectors: each described once (spec/GV.md GV-2.3).

A flag names the property a test case exercises, in the manner of Project Wycheproof's notes
table. Every JSON file carries the entries of the flags it uses under ``notes``; the conformance
harness counts results per flag and cites the flag's ``clause`` when a case fails.

``bugType`` says what an implementation that fails the case most likely got wrong:
- ``"BASIC"``: the plain rule (rounding, packing order, layout);
- ``"EDGE_CASE"``: a boundary of range or of a scale rule;
- ``"KNOWN_DEFECT"``: a defect seen in a widely used implementation (``invalid`` results);
- ``"LEGITIMATE"``: a documented implementation difference (``acceptable`` results).

``clause`` is the codec clause (spec/MX.md) that fixes the expected output; it is what a failing
case "breaks".
"""
from __future__ import annotations

from .flag import Flag


def _f(name, bug_type, clause, description):
    return Flag(name, bug_type, description, clause)


#: Every flag the generator may emit; order is the order of the notes table.
FLAGS: dict[str, Flag] = {f.name: f for f in [
    # element level
    _f("ExactValue", "BASIC", "MX-3.1",
       "The input is exactly an element value times the scale; its code is that value's code."),
    _f("Tie", "BASIC", "MX-3.1",
       "The scaled input lies exactly halfway between two element values; round-to-nearest-even "
       "picks the code with the even mantissa (ties-away implementations fail here)."),
    _f("TieNeighbour", "BASIC", "MX-3.1",
       "The scaled input is one float32 ulp above or below a halfway point; it goes to the nearer "
       "element value."),
    _f("Saturation", "EDGE_CASE", "MX-3.2",
       "The scaled input is at or beyond the largest element magnitude; the code saturates to "
       "+-max (never Inf or NaN)."),
    _f("SignedZero", "EDGE_CASE", "MX-3.3",
       "A negative input that rounds to zero keeps its sign: code 0x8 in E2M1."),
    _f("Subnormal", "EDGE_CASE", "MX-3.1",
       "Float32 subnormal inputs (down to 2^-149)."),
    _f("NonFinite", "EDGE_CASE", "MX-3.4",
       "Inf or NaN element input to encode(): Inf saturates to +-max; NaN gives the documented "
       "NaN code (E2M1 has none)."),
    _f("Random", "BASIC", "MX-5.3",
       "Weighted random draw (TestFloat style): exponents biased toward boundaries."),
    # block level
    _f("MseFloorPlusOne", "BASIC", "MX-4.8",
       "Under the MSE rule the block's squared error is strictly smaller at FLOOR's code + 1: the "
       "scale is FLOOR + 1 (a FLOOR kernel gives one less)."),
    _f("MseFloorKept", "BASIC", "MX-4.8",
       "Under the MSE rule FLOOR's code has the strictly smaller squared error: the scale is FLOOR's."),
    _f("MseTie", "EDGE_CASE", "MX-4.8",
       "Under the MSE rule both candidates have the same squared error: the tie keeps FLOOR's code "
       "(a kernel that takes FLOOR + 1 on ties fails here)."),
    _f("ZeroBlock", "EDGE_CASE", "MX-4.6",
       "All elements are +-0: scale code 0x00 and zero codes of the same sign."),
    _f("ScaleRuleBoundary", "EDGE_CASE", "MX-4.9",
       "amax at a significand where one scale rule's exponent steps up (FLOOR / CEIL at 1, EVEN at "
       "2 - 2^-(mbits+1), CUTLASS at 1.75, RCEIL at max / 2^emax), or one float32 ulp either side."),
    _f("Triton6054", "EDGE_CASE", "MX-4.2",
       "The 32 values of Triton issue 6054 (6, 0, 0.24, 0.25, 0.75, 0.99, 1.2, 1.3 four times), "
       "on which implementations of different scale rules disagree; each group gives its rule's answer."),
    _f("ScaleBoundary", "EDGE_CASE", "MX-4.2",
       "The block max sits on or next to a value where the scale rules FLOOR / RCEIL / CEIL / EVEN "
       "disagree (6, 6+ulp, 7, 8-ulp, 8, 3+ulp, ...)."),
    _f("PowerOfTwo", "EDGE_CASE", "MX-4.7",
       "The block max is a power of two or one ulp below it: floor(log2 amax) must come from the "
       "exponent bits; float log2 rounds up just below 2^k."),
    _f("ScaleCodeZero", "EDGE_CASE", "MX-4.1",
       "The scale clamps to code 0x00, which means 2^-127 (not zero, not 2^-126): elements are "
       "divided by exactly 2^-127 and are not flushed."),
    _f("ExtremeMagnitude", "EDGE_CASE", "MX-4.6",
       "Block max near the top of float32 (2^127, FLT_MAX): the scale code reaches 0xFC..0xFE."),
    _f("MixedMagnitude", "EDGE_CASE", "MX-5.3",
       "One huge element and small ones: the small ones underflow to signed zero."),
    _f("NaNBlock", "EDGE_CASE", "MX-5.2",
       "A NaN in the block: scale code 0xFF (the whole block is NaN)."),
    _f("InfBlock", "EDGE_CASE", "MX-4.6",
       "An Inf in the block: scale code 0xFF (non-saturating); 0xFE under satfinite."),
    _f("Bf16Trap", "EDGE_CASE", "MX-4.3",
       "Inputs whose scale changes if they are first rounded to bfloat16 (0x40600001 under "
       "RCEIL, 0x43FFFFFF under FLOOR)."),
    _f("RcdSubnormalQuotient", "EDGE_CASE", "MX-4.3",
       "RCEIL: amax / max_elem is a float32 subnormal; the code follows the float32 quotient "
       "as hardware computes it."),
    _f("Grid", "BASIC", "MX-5.3",
       "TestFloat grid: block-max exponent pattern x mantissa pattern x position in the block, "
       "other elements at fixed fractions of the max."),
    # acceptable (legitimate) differences
    _f("NanElementCode", "LEGITIMATE", "MX-5.4",
       "The element codes of a NaN block (or a NaN element) are implementation-defined; only the "
       "scale is compared."),
    _f("InfScaleSatfinite", "LEGITIMATE", "MX-4.6",
       "Satfinite implementations (NVIDIA cvt.satfinite, TransformerEngine) give an Inf block the "
       "scale 0xFE instead of 0xFF."),
    # layout, dequantize, dot
    _f("PackOrder", "BASIC", "MX-8.1",
       "FP4 packing: element 2i goes in the low nibble, element 2i+1 in the high nibble."),
    _f("SwizzleLayout", "BASIC", "MX-8.2",
       "cuBLAS / CUTLASS 128x4 block-scale layout, offsets by the formula of the spec."),
    _f("SwizzlePadding", "EDGE_CASE", "MX-8.2",
       "Scale matrices whose shape is not a multiple of 128 x 4: zero padding."),
    _f("TritonHopperScaleLayout", "BASIC", "MX-8.4",
       "triton_kernels' Hopper MX scale layout (num_warps w): rows padded to 32 w, cols to 2."),
    _f("TritonBlackwellScaleLayout", "BASIC", "MX-8.5",
       "triton_kernels' Blackwell MX scale layout: the 128 x 4 tiles with cols padded to 8."),
    _f("TritonCdna4ScaleLayout", "BASIC", "MX-8.6",
       "triton_kernels' CDNA4 (gfx950) MX scale preshuffle: rows padded to 32, cols to 8."),
    _f("AiterE8m0ShuffleScaleLayout", "BASIC", "MX-8.9",
       "ROCm aiter's e8m0_shuffle / shuffle_scale (gfx950): the CDNA4 map, rows padded to 256."),
    _f("AiterA16w4ScaleShuffle", "BASIC", "MX-8.10",
       "ROCm aiter's MoE a16w4 scale shuffle: per expert the CDNA4 map, no padding, gate/up paired."),
    _f("VendorScalePadding", "EDGE_CASE", "MX-8.7",
       "A vendor-layout scale matrix that needs padding: every padding byte is 0x00."),
    _f("GptOssMxfp4", "BASIC", "MX-8.8",
       "gpt-oss checkpoint MXFP4 tensors (blocks + scales) dequantized to the loader's bfloat16 W."),
    _f("GptOssOverflow", "EDGE_CASE", "MX-8.8",
       "A dequantized weight beyond bfloat16's largest value (scale 0xFE, |value| >= 2): +-Inf."),
    _f("ScaleNaN", "EDGE_CASE", "MX-5.6",
       "Dequantize with scale 0xFF: every element is NaN whatever its code."),
    _f("Overflow", "EDGE_CASE", "MX-5.6",
       "Dequantize with a large scale: 6 x 2^127 exceeds float32 (Inf in a float32 output, "
       "finite in float64)."),
    _f("Accumulation", "BASIC", "CF-3.6",
       "Scaled dot product compared with a float64 reference within the documented accumulation "
       "tolerance."),
    _f("Exhaustive", "BASIC", "MX-3.1",
       "Bulk: every bfloat16 bit pattern (as float32) through the element encoder."),
    _f("NVFP4", "BASIC", "MX-9.2",
       "NVFP4: block 16, E4M3 block scale, float32 per-tensor scale."),
    _f("Nvfp4NoTensorScale", "EDGE_CASE", "MX-9.5",
       "NVFP4 without a tensor scale (g = 1, rule none): the E4M3 block scale alone carries the "
       "range, so amax_b / 6 above 448 saturates the scale and at 2^-10 or below the block is 0."),
    # known defects (invalid results)
    _f("KnownDefectTiesAway", "KNOWN_DEFECT", "MX-3.1",
       "The output of ties-away-from-zero rounding (microxcaling's default): wrong."),
    _f("KnownDefectHighNibbleFirst", "KNOWN_DEFECT", "MX-8.1",
       "Element 2i in the high nibble (torchao <= 0.14, PTX cvt operand order): wrong."),
    _f("ScaleRuleVariant", "LEGITIMATE", "MX-4.2",
       "Harness only: the output matches the same input under another scale rule that the "
       "profile accepts."),
    _f("KnownDefectScaleZeroAsZero", "KNOWN_DEFECT", "MX-4.1",
       "Scale code 0x00 decoded as 0.0 (Triton's software dot_scaled): wrong."),
    _f("KnownDefectFloatLog2", "KNOWN_DEFECT", "MX-4.7",
       "The block exponent taken through a float32 log2, which rounds up just below 2^k (and "
       "for RCEIL down just above it): the scale is one off. Wrong."),
    _f("KnownDefectScaleNotClamped", "KNOWN_DEFECT", "MX-4.6",
       "A scale code below 0x00 wrapped modulo 256 instead of clamped to 0x00 (a uint8 cast of "
       "a negative exponent, e.g. gguf-py 0.19 MXFP4): wrong."),
    _f("KnownDefectDivisorClampedAt2^-126", "KNOWN_DEFECT", "MX-4.1",
       "Scale code 0x00 applied as 2^-126 (the smallest normal float32) instead of 2^-127: "
       "every element of the block is halved. Wrong."),
    _f("KnownDefectFlushedScaleCodeZero", "KNOWN_DEFECT", "MX-4.1",
       "A scale-code-0x00 block written as all +0 codes (a reciprocal 2^127 that overflows, "
       "or FTZ): wrong."),
    _f("KnownDefectNanBlockFiniteScale", "KNOWN_DEFECT", "MX-5.2",
       "A NaN block given the finite scale of its other elements (NaN dropped by a max that "
       "ignores it, or a satfinite cast of NaN): wrong; NaN gives 0xFF."),
    _f("KnownDefectGgufPairNibbles", "KNOWN_DEFECT", "MX-8.3",
       "A ggml MXFP4 block whose nibbles are in OCP pair order (element 2j low, 2j+1 high) "
       "instead of ggml's j / j+16: wrong."),
    _f("UnsignedZero", "LEGITIMATE", "MX-3.3",
       "Harness only: the output differs only in +0 written for a negative value that rounds "
       "to zero, and the profile carries the unsigned-zero option (CF-2.4)."),
    _f("GgufBlock", "BASIC", "MX-8.3",
       "ggml block_mxfp4: the E8M0 byte, then 16 bytes with element j in the low nibble and "
       "element j + 16 in the high nibble."),
]}


def notes_for(names) -> dict:
    """The notes table for the flags in ``names`` (dict flag -> note), in FLAGS order."""
    wanted = set(names)
    unknown = wanted - set(FLAGS)
    if unknown:
        raise KeyError(f"unknown golden flags: {sorted(unknown)}")
    return {n: FLAGS[n].note() for n in FLAGS if n in wanted}


from .rotation_flags import ROTATION_FLAGS  # noqa: E402 - the rotation kinds' flags (GV-7)

FLAGS.update({f.name: f for f in ROTATION_FLAGS})
