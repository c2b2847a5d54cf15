"""What the codec and the token models share, with no knowledge of either.

- ``toolkit.files``: atomic writes and file digests.
- ``toolkit.audio``: reading, resampling and writing audio files.
- ``toolkit.weights``: safetensors-only, strict (key for key) weight loading.
- ``toolkit.errors``: ``InputError``, the one-line error for input that cannot be used.
- ``toolkit.metrics``: speech quality metrics (PESQ, STOI, V/UV F1).
- ``toolkit.runs``: what every training run shares: checkpoints with manifests and exact resume, learning-rate
  schedule, non-finite guard, metrics log, YAML configs, and the recipes' exit policy.

The import rules (tested): ``toolkit`` imports neither ``codec`` nor ``tts``; ``codec`` never imports ``tts``; ``tts``
uses the codec only through what ``codec/__init__.py`` exports.
"""
