"""Training: one run from a prepared :class:`~kdkit.training.job.TrainingJob` to a finished run directory.

- :mod:`~kdkit.training.stage`: the stage shared by ``finetune`` and ``distill`` (train, save, evaluate, record);
- :mod:`~kdkit.training.trainer`: :class:`~kdkit.training.trainer.DistillationTrainer`, transformers' Trainer
  asking a loss plugin for its terms, and :mod:`~kdkit.training.step`, the forward passes of one step;
- :mod:`~kdkit.training.arguments`: the Trainer's arguments (device, precision, schedule, checkpoints);
- :mod:`~kdkit.training.checkpoints` and :mod:`~kdkit.training.loss_modules`: complete checkpoints, a loss's
  trainable modules;
- :mod:`~kdkit.training.teachers`, :mod:`~kdkit.training.teacher_budget`: the default teacher and its budget;
- :mod:`~kdkit.training.teacher_cache`, :mod:`~kdkit.training.cache_store`: teacher signals computed once and
  kept as verified cache entries;
- :mod:`~kdkit.training.evaluation`, :mod:`~kdkit.training.tracking`, :mod:`~kdkit.training.progress`: metrics on
  the validation splits, experiment trackers, progress display.

It imports :mod:`kdkit.losses` and everything below it, never :mod:`kdkit.plugins` or :mod:`kdkit.api`.
"""
