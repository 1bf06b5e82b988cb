"""kdkit-repeat: an example augmenter plugin for kdkit (``kdkit distill --augment repeat``)."""
