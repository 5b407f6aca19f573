"""``python -m torq_ref``: see :mod:`torq_ref.cli`."""
from torq_ref.cli import main

raise SystemExit(main())
