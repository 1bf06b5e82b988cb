"""kdkit-occlusion: the ``occlusion`` attribution provider for kdkit (an example third-party plugin)."""

__version__ = "0.1.0"
