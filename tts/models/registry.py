"""The one registry of token models, used by training, releases, export and the synthesizer.

A new model implements ``tts.models.base.TokenModel`` in its own file and adds one line to ``MODELS``.
"""

from __future__ import annotations

from typing import Dict, Type

from tts.models.aligner import AlignerModel
from tts.models.base import TokenModel
from tts.models.mobilespeech import MobileSpeech
from tts.models.valle import Valle

MODELS: Dict[str, Type[TokenModel]] = {model.name: model for model in (
    Valle,
    MobileSpeech,
    AlignerModel,
)}


def model_class(name: str) -> Type[TokenModel]:
    """The model class registered as ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model type {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name]
