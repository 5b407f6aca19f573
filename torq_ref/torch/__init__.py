"""The torch path: apply an exported TORQ plan (spec/TQ.md section 8) to a Hugging Face
transformers model and evaluate it (spec/TQ.md section 9). Needs the ``torch`` extra.

It sits above :mod:`torq_ref.torq` (it reads plans) and :mod:`torq_ref.evaluate` (it reuses the
metrics); nothing below imports it. ``fake_quant`` (the MX fake quantizer), ``apply`` (a plan's
row on a model), ``evaluate`` (the metrics against FP32 and the NumPy engine), ``cli``
(``eval-plan``).
"""
