"""Weight quantizers beyond round-to-nearest (spec/TQ.md section 7): GPTQ with MX groups."""
from .gptq import GPTQ_DEFAULTS, GPTQError, gptq_quantize, transformed_hessian

__all__ = ["GPTQ_DEFAULTS", "GPTQError", "gptq_quantize", "transformed_hessian"]
