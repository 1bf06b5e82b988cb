"""``kdkit compress``: search for the most accurate student that meets a latency, size or accuracy budget
(:mod:`kdkit.compress.search`). Above the API: it distils through :func:`kdkit.api.distill` and exports through
:func:`kdkit.export.stage.export_onnx`; nothing below it imports it."""

from kdkit.compress.budget import Budget, BudgetUnmet
from kdkit.compress.search import CompressOptions, CompressResult, compress

__all__ = ["Budget", "BudgetUnmet", "CompressOptions", "CompressResult", "compress"]
