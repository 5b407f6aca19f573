"""Rotations for MXFP4: Schur-Horn inter-block (spec/SH.md), max-entropy intra-block (spec/ME.md)."""
from .givens import GivensSequence, GivensFileError
from .schur_horn import MajorizationError, SymmetricMatrixError, schur_horn, schur_horn_blocks, check_majorization, block_traces
from .entropy import code_entropy, code_histogram, entropy_from_counts, MAX_ENTROPY_BITS
from .maxent import maxent_rotation, MaxentReport, SweepRecord, MaxentInputError, DEFAULT_BETA
from .baselines import DenseOrthogonal, HadamardOrderError, hadamard, sylvester_hadamard, block_hadamard, random_sign_hadamard, random_orthogonal
from .metrics import second_moment, block_energies, block_energy_imbalance, scale_exponent_spread, mxfp4_nmse
from .inter_block import STRATEGIES, ComposedOrthogonal, macro_rotation, compare_strategies, choose_strategy, select_macro_rotation
