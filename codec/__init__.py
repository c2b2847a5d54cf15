"""Language-Codec: a 24 kHz, 75 Hz neural speech codec with masked channel residual vector quantization (MCRVQ).

Public interface (what the token models use): ``LanguageCodec`` (``encode``, ``decode``, ``sample_rate``,
``frame_rate``, ``num_codebooks``, ``codebook_size``), ``load_codec``, its ``CodecConfig``, ``BUNDLED_DIR`` (the
bundled release), ``read_release_version`` (a release's own version), ``reconstruction_metrics``, ``CodecError``,
and the file helpers ``load_audio`` / ``save_audio``
(from ``toolkit.audio``).
"""

from toolkit.audio import load_audio, save_audio

from .checkpoint import read_version as read_release_version
from .config import AttentionConfig, CodecConfig, DecoderConfig, EncoderConfig, QuantizerConfig
from .errors import CodecError
from .metrics import reconstruction_metrics
from .model import BUNDLED_DIR, CodecOutput, LanguageCodec, load_codec

__all__ = [
    "BUNDLED_DIR", "AttentionConfig", "CodecConfig", "CodecError", "CodecOutput", "DecoderConfig", "EncoderConfig",
    "LanguageCodec", "QuantizerConfig", "load_audio", "load_codec", "read_release_version", "reconstruction_metrics",
    "save_audio",
]
__version__ = "0.1.0"
