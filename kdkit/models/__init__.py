"""Models: loading models and tokenizers, building students, saving and checking them.

- :mod:`~kdkit.models.loading`: tokenizers, a base model with a fresh head (teachers), fine-tuned classifiers;
- :mod:`~kdkit.models.students`: ``copy:N`` students made of the teacher's own layers, or a model path;
- :mod:`~kdkit.models.layers`: a model's layer list, depth and width, found through its own API;
- :mod:`~kdkit.models.saving`: saving as kdkit does (``kdkit_task.json`` with checksums) and verifying;
- :mod:`~kdkit.models.checks`: one-line errors about model paths, positions, token types, heads and vocabularies
  (torch-free: ``kdkit predict`` checks an export's positions with it).

Every load passes ``trust_remote_code=False``. It imports :mod:`kdkit.records` and :mod:`kdkit.data` below it.
"""
