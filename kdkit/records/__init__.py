"""Records: what kdkit writes to disk and reads back, without torch.

- :mod:`~kdkit.records.manifests`: pydantic models of every JSON file kdkit reads back, checksums, atomic writes;
- :mod:`~kdkit.records.runs`: run directories (``<output>.partial`` renamed when finished), ``start.json`` and
  what ``--resume`` and ``--overwrite`` accept;
- :mod:`~kdkit.records.locking`: the lock on a run directory;
- :mod:`~kdkit.records.run_summary`: ``run.json`` (:class:`~kdkit.records.run_summary.RunSummary`);
- :mod:`~kdkit.records.provenance`: what a run, model or export records about its task and data, read back;
- :mod:`~kdkit.records.model_card`, :mod:`~kdkit.records.card_sections`, :mod:`~kdkit.records.curves`: model
  cards (Hugging Face format) and training curves drawn from ``run.json``;
- :mod:`~kdkit.records.home`: ``KDKIT_HOME``, where cached teachers and teacher signals live.

Nothing here imports torch, transformers or ``datasets`` (a test checks it): ``kdkit predict`` reads records.
It imports :mod:`kdkit.config`, :mod:`kdkit.errors` and :mod:`kdkit.data.tasks`.
"""
