"""The end-to-end TORQ pipeline and its evaluation table (spec/TQ.md); ``python -m torq_ref run``."""
from .methods import METHODS, SETTINGS, SettingsError, TorqConfig, site_transform
from .pipeline import RunSpec, evaluate_methods, run

__all__ = ["METHODS", "SETTINGS", "RunSpec", "SettingsError", "TorqConfig", "evaluate_methods", "run",
           "site_transform"]
