"""Self-checks of the oracle: ``python -m torq_ref selftest --mutations`` (spec/ST.md).

An oracle is only worth its ability to fail: :mod:`.plants` is a registry of realistic planted
bugs and :mod:`.runner` applies each one in a scratch copy of the checkout, runs the tests that
must see it and reports caught / escaped per plant (docs/testing.md). ST-1.1: the
registry; ST-1.2 / ST-1.3: the runner and its report.
"""
