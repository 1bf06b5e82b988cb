"""AD-KD for kdkit: Attribution-Driven Knowledge Distillation (Wu et al., ACL 2023).

Components (registered through the ``kdkit`` entry point ``adkd``):

- the ``ig`` attribution provider (:class:`kdkit_adkd.ig.IntegratedGradients`): Integrated Gradients at
  the output of the model's embedding block;
- the ``adkd`` loss (:class:`kdkit_adkd.loss.ADKDLoss`): (1-α)·CE + α·KD + β·L_attr.

See docs/adkd.md in the kdkit repository.
"""

__version__ = "0.1.0"
