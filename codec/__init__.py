"""Language-Codec: a 24 kHz, 75 Hz neural speech codec with masked channel residual vector quantization (MCRVQ).

Public interface: ``LanguageCodec`` (``encode``, ``decode``, ``sample_rate``, ``frame_rate``, ``num_codebooks``,
``codebook_size``), its ``CodecConfig``, and the file helpers ``load_audio`` / ``save_audio``.
"""

from .audio import load_audio, save_audio
from .config import AttentionConfig, CodecConfig, DecoderConfig, EncoderConfig, QuantizerConfig
from .errors import CodecError
from .model import CodecOutput, LanguageCodec, load_codec

__all__ = [
    "AttentionConfig", "CodecConfig", "CodecError", "CodecOutput", "DecoderConfig", "EncoderConfig", "LanguageCodec",
    "QuantizerConfig", "load_audio", "load_codec", "save_audio",
]
__version__ = "0.1.0"
