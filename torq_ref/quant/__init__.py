"""Weight quantizers beyond round-to-nearest (spec/TQ.md section 7): GPTQ and GPFQ with MX groups."""
from .gpfq import GPFQ_DEFAULTS, GPFQError, gpfq_quantize
from .gptq import GPTQ_DEFAULTS, GPTQError, gptq_quantize, transformed_hessian

__all__ = ["GPFQ_DEFAULTS", "GPFQError", "gpfq_quantize", "GPTQ_DEFAULTS", "GPTQError", "gptq_quantize",
           "transformed_hessian"]
