"""Losses: what a distillation run minimises.

- :mod:`~kdkit.losses.base`: :class:`~kdkit.losses.base.DistillationLoss` (the interface a loss plugin
  implements), :class:`~kdkit.losses.base.LossNeeds` (what it asks of the models), the batch and the context it
  is handed;
- :mod:`~kdkit.losses.formulas`: the supervised task loss and its term's name, Hinton's KD term, temperatures;
- :mod:`~kdkit.losses.kd`: the ``ce`` and ``kd`` losses (the built-in plugin, :mod:`kdkit.plugins.builtin`,
  contributes them with ``hidden`` and ``attention``);
- :mod:`~kdkit.losses.composite`: the terms of several losses in one run (``--plugin adkd --plugin hidden``);
- :mod:`~kdkit.losses.hidden`, :mod:`~kdkit.losses.attention` and :mod:`~kdkit.losses.layer_map`: the
  intermediate-layer losses and which teacher layer each student layer is matched with.

It imports :mod:`kdkit.attribution`, :mod:`kdkit.models` and :mod:`kdkit.data` below it.
"""
