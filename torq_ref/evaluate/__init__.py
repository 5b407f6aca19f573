"""Token-level evaluation against the FP32 model: NLL, KL divergence, top-1 agreement, their
standard errors over windows, paired confidence intervals and the summary table (spec/EV.md)."""
from .intervals import IntervalError, paired_ci, weighted_mean, window_se, windows_to_separate
from .summary import metrics_table, summarize
from .token_metrics import ref_logprobs, window_metrics

__all__ = ["IntervalError", "metrics_table", "paired_ci", "ref_logprobs", "summarize",
           "weighted_mean", "window_metrics", "window_se",
           "windows_to_separate"]
