"""Conformance checks for plugin components, to run in a plugin's own test suite.

    from kdkit.testing import check_attribution_provider, check_loss

    def test_my_provider_conforms():
        check_attribution_provider(MyProvider)            # or an instance built with options

    def test_my_loss_conforms():
        check_loss(MyLoss, {"weight": 0.5})

Each check builds tiny random models in memory (no download, a second or two on a CPU), uses the component
the way kdkit's trainer and teacher-signal cache do, and raises :class:`AssertionError` naming the rule that
was broken and what was seen. On success it returns a :class:`ConformanceReport` listing what was checked.

The rules are the contracts of :mod:`kdkit.attribution` and :mod:`kdkit.losses` (docs/plugins.md), the methods
a plugin overrides included (``binary_views_equal()`` is verified when it says True). The checks live in
:mod:`kdkit.testing.conformance_provider` and :mod:`kdkit.testing.conformance_loss`; what they share (the report,
the test batch) in :mod:`kdkit.testing.conformance_base`.
"""

from kdkit.testing.conformance_base import (
    BATCH_LENGTHS,
    ConformanceError,
    ConformanceReport,
    longest_length,
    model_inputs,
)
from kdkit.testing.conformance_loss import DEFAULT_TASKS, check_loss
from kdkit.testing.conformance_provider import check_attribution_provider

__all__ = [
    "BATCH_LENGTHS",
    "DEFAULT_TASKS",
    "ConformanceError",
    "ConformanceReport",
    "check_attribution_provider",
    "check_loss",
    "longest_length",
    "model_inputs",
]
