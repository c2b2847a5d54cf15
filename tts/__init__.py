"""Zero-shot text-to-speech on the Language-Codec codec (VALL-E, MobileSpeech); sees the codec only through its
public interface (``encode``, ``decode``, ``sample_rate``, ``frame_rate``, ``num_codebooks``, ``codebook_size``)."""

__version__ = "0.1.0"
