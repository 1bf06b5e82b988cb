"""Data: what a task is and where its examples come from, up to the batches a model sees.

- :mod:`~kdkit.data.tasks`: :class:`~kdkit.data.tasks.TaskSpec` and the nine GLUE tasks;
- :mod:`~kdkit.data.sources`: where the data comes from (``--data-dir``, ``KDKIT_GLUE_DIR``, the hub, the
  local files a run reads and records);
- :mod:`~kdkit.data.loading`: raw GLUE and custom CSV/TSV/JSON(L) data, loaded and validated once per run;
- :mod:`~kdkit.data.labels`: classes or regression, decided from the labels as written;
- :mod:`~kdkit.data.checks`: data options that would be ignored, a custom task named like a GLUE task, one class;
- :mod:`~kdkit.data.texts`: text files must be UTF-8, YAML is bounded, texts given on the command line valid;
- :mod:`~kdkit.data.transfer`, :mod:`~kdkit.data.soft_labels`: unlabelled texts the teacher labels; a teacher given
  as a file of soft labels;
- :mod:`~kdkit.data.augmentation` and :mod:`~kdkit.data.augmenters`: augmenters (a plugin kind) and the built-in ones;
- :mod:`~kdkit.data.tokenizing`: raw splits become model inputs (``datasets.map``, cached);
- :mod:`~kdkit.data.batching`: splits held as numpy columns, padded batches (``DistillationCollator``);
- :mod:`~kdkit.data.metrics` and :mod:`~kdkit.data.baselines`: task metrics, and what a guess scores.

It imports only :mod:`kdkit.config` and :mod:`kdkit.errors` from the rest of kdkit.
"""
