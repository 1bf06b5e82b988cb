"""Attribution: which input tokens a classifier's score rests on.

- :mod:`~kdkit.attribution.base`: :class:`~kdkit.attribution.base.AttributionProvider` (the interface a provider
  plugin implements), the embedding block and layer hooks providers share, normalised token maps;
- :mod:`~kdkit.attribution.explain`: ``kdkit explain``: a saved model's token maps for some texts;
- :mod:`~kdkit.attribution.heatmaps`: those maps drawn on a terminal, as HTML and as SVG.

It imports :mod:`kdkit.models`, :mod:`kdkit.records` and :mod:`kdkit.data` below it.
"""
