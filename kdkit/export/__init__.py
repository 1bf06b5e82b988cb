"""Export: a trained student as a validated ONNX model, served without torch.

- :mod:`~kdkit.export.stage`: ``kdkit export --onnx`` as a stage (load, convert, check, describe, commit);
- :mod:`~kdkit.export.onnx`: PyTorch -> ONNX, onnxruntime fusions, int8 quantisation;
- :mod:`~kdkit.export.validation`: the export checked against PyTorch on real batches and the validation set;
- :mod:`~kdkit.export.manifest`: ``kdkit_export.json`` as written;
- :mod:`~kdkit.export.hf_layout`: the Hugging Face layout that optimum-onnx and transformers.js load;
- :mod:`~kdkit.export.inference`: :class:`~kdkit.export.inference.OnnxClassifier`, behind ``kdkit predict``
  (onnxruntime, tokenizers and numpy: no torch, a test checks it).

It imports :mod:`kdkit.models`, :mod:`kdkit.records` and :mod:`kdkit.data` below it.
"""
