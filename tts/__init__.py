"""Zero-shot text-to-speech on the Language-Codec codec (VALL-E, MobileSpeech); sees the codec only through its
public interface (``encode``, ``decode``, ``sample_rate``, ``frame_rate``, ``num_codebooks``, ``codebook_size``)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``from tts import Synthesizer`` without importing torch for ``tts --version``
    if name in ("Synthesizer", "SynthesisError"):
        from tts import synthesizer

        return getattr(synthesizer, name)
    raise AttributeError(f"module 'tts' has no attribute {name!r}")
