"""What the codec and the token models share, with no knowledge of either.

- ``toolkit.files``: atomic writes and file digests.
- ``toolkit.audio``: reading, resampling and writing audio files.
- ``toolkit.weights``: safetensors-only, strict (key for key) weight loading; a release's weights as one file or
  as Hugging Face shards with their index.
- ``toolkit.errors``: ``InputError``, the one-line error for input that cannot be used.
- ``toolkit.metrics``: speech quality metrics (PESQ, STOI, V/UV F1).
- ``toolkit.engine``: the training engine (``Trainer``: loop, logging, non-finite guard, budgets, checkpoints with
  exact resume) that the codec and token-model trainers build on, and the training recipes' shared options.
- ``toolkit.config``: the one strict builder of nested dataclass configs.
- ``toolkit.runs``: the pieces under the engine: checkpoints with manifests, learning-rate schedule, the ranks'
  finiteness agreement, metrics log, YAML configs with overrides, and the recipes' exit policy.

The import rules (tested): ``toolkit`` imports neither ``codec`` nor ``tts``; ``codec`` never imports ``tts``; ``tts``
uses the codec only through what ``codec/__init__.py`` exports.
"""
