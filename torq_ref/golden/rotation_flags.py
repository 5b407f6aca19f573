"""The flags of the rotation kinds' golden vectors (spec/GV.md GV-7.1 .. GV-7.4), merged into
:data:`torq_ref.golden.flags.FLAGS`."""
from __future__ import annotations

from .flag import Flag


def _f(name, bug_type, clause, description):
    return Flag(name, bug_type, description, clause)


ROTATION_FLAGS = [
    _f("HadamardDelta", "BASIC", "CF-5.2",
       "Unit input rows: each output row is one row of the Hadamard matrix, so a kernel with "
       "another convention (unnormalized, sequency order, left multiplication) shows it."),
    _f("HadamardRandom", "BASIC", "CF-5.3", "Gaussian float32 rows."),
    _f("HadamardAdversarial", "EDGE_CASE", "CF-5.3",
       "Positive rows whose pairwise sum (the first output) rounds by a large fraction of the "
       "float32 butterfly bound: the bound is not vacuous."),
    _f("HadamardRange", "EDGE_CASE", "CF-5.3",
       "Magnitudes from 2^-60 to 2^60 with random signs: cancellation against the bound."),
    _f("HadamardZero", "EDGE_CASE", "CF-5.3", "+0 and -0 inputs: the output must be zero."),
    _f("HadamardLarge", "BASIC", "CF-5.4",
       "Harness only: blocks 512 .. 16384 generated from a fixed seed."),
    _f("RotateRandom", "BASIC", "CF-5.6", "Heavy-tailed random rows, far from every boundary."),
    _f("RotateZero", "EDGE_CASE", "CF-5.6", "An all-zero row: scale 0x00, codes 0x0."),
    _f("NearElementBoundary", "LEGITIMATE", "CF-5.8",
       "A rotated value within the float32 summation bound of an E2M1 midpoint: a kernel may "
       "round it either way (acceptable)."),
    _f("OutsideElementBound", "EDGE_CASE", "CF-5.8",
       "A rotated value just outside the float32 summation bound of an E2M1 midpoint: every "
       "float32 summation order gives the expected code (bit-exact)."),
    _f("NearScaleBoundary", "LEGITIMATE", "CF-5.8",
       "A block amax within the float32 summation bound of the binade edge that changes the E8M0 "
       "scale: either scale, with its codes, is acceptable."),
    _f("OutsideScaleBound", "EDGE_CASE", "CF-5.8",
       "A block amax just outside the float32 summation bound of the binade edge: the expected "
       "scale is the only one (bit-exact)."),
    _f("ShConstant", "BASIC", "CF-5.10", "Schur-Horn target trace / n (the TORQ use)."),
    _f("ShMajorized", "BASIC", "CF-5.10", "Schur-Horn target P lam with P doubly stochastic."),
    _f("ShPermutation", "EDGE_CASE", "CF-5.10",
       "Schur-Horn target a permutation of the eigenvalues: on the boundary of the permutohedron."),
    _f("ShDegenerate", "EDGE_CASE", "CF-5.10", "Repeated eigenvalues."),
    _f("ShNotMajorized", "EDGE_CASE", "CF-5.10",
       "A target the eigenvalues do not majorize (a partial sum exceeds by 1e-3 max|lam|): the "
       "builder must refuse."),
    _f("ShTraceMismatch", "EDGE_CASE", "CF-5.10",
       "A target whose total differs from the trace by 1e-3 max|lam|: the builder must refuse."),
    _f("MaxentHeldout", "BASIC", "CF-5.11",
       "A max-entropy optimizer's R judged by its held-out objective against the reference's."),
]
