"""Configuration of the Language-Codec model.

Small frozen dataclasses, one per part of the model. ``CodecConfig()`` is the release (paper) size; presets for the
official checkpoints and for tests are classmethods. Configs round-trip through plain dicts (``to_dict`` /
``from_dict``) so a release directory describes itself in ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from toolkit.config import build


@dataclass(frozen=True)
class EncoderConfig:
    """SEANet encoder (EnCodec), non-causal, weight-normed, reflect padding.

    Attributes:
        base_width: channels of the first conv; doubled at each downsampling stage.
        ratios: downsampling strides in the order they are applied (the official config lists them reversed).
        latent_dim: D, the channels of the latent that is quantized.
        lstm_layers: layers of the LSTM (with additive skip) before the last conv; 0 disables it.
    """

    base_width: int = 32
    ratios: Tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 128
    lstm_layers: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)


@dataclass(frozen=True)
class QuantizerConfig:
    """Vector quantizers (EMA codebooks, k-means init, dead-code replacement).

    Attributes:
        kind: ``"mcrvq"`` (masked channel RVQ, the paper's) or ``"rvq"`` (plain residual VQ, the ablation).
        num_groups: MCRVQ only: how many quantizers run in parallel on disjoint channel groups of the latent.
        train_num_quantizers: numbers of quantizers sampled uniformly per training step (the paper's 3..8).
    """

    kind: str = "mcrvq"
    num_quantizers: int = 8
    codebook_size: int = 1024
    num_groups: int = 3
    decay: float = 0.99
    epsilon: float = 1e-5
    kmeans_iters: int = 50
    threshold_ema_dead_code: float = 2.0
    train_num_quantizers: Tuple[int, ...] = (3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class AttentionConfig:
    """The decoder's attention block (paper Appendix I): resnet blocks, single-head self-attention, resnet blocks."""

    resnet_blocks_before: int = 2
    resnet_blocks_after: int = 2
    dropout: float = 0.1
    max_groups: int = 32


@dataclass(frozen=True)
class DecoderConfig:
    """Vocos backbone: ConvNeXt blocks with AdaLayerNorm on ``bandwidth_id``, then an ISTFT head.

    Attributes:
        num_bandwidths: rows of the AdaLayerNorm embeddings, i.e. valid ``bandwidth_id`` values.
        attention: the attention block placed before the ConvNeXt stack; ``None`` leaves it out (the official code).
    """

    dim: int = 384
    intermediate_dim: int = 1152
    num_layers: int = 12
    num_bandwidths: int = 4
    kernel_size: int = 7
    layer_scale_init: Optional[float] = None
    attention: Optional[AttentionConfig] = field(default_factory=AttentionConfig)
    n_fft: int = 1280
    max_magnitude: float = 100.0


@dataclass(frozen=True)
class CodecConfig:
    """The whole codec. ``CodecConfig()`` is the release (paper) size with the attention block."""

    sample_rate: int = 24000
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        hop = self.encoder.hop_length
        if self.sample_rate % hop:
            raise ValueError(f"sample_rate {self.sample_rate} is not a multiple of the encoder hop {hop}")
        if self.decoder.n_fft < hop or (self.decoder.n_fft - hop) % 2:
            raise ValueError(f"n_fft {self.decoder.n_fft} must be >= hop {hop} with an even difference")
        if self.quantizer.kind not in ("mcrvq", "rvq"):
            raise ValueError(f"unknown quantizer kind {self.quantizer.kind!r} (expected 'mcrvq' or 'rvq')")
        if self.quantizer.kind == "mcrvq" and self.quantizer.num_groups > self.quantizer.num_quantizers:
            raise ValueError("MCRVQ needs at least as many quantizers as channel groups")
        if any(n < 1 or n > self.quantizer.num_quantizers for n in self.quantizer.train_num_quantizers):
            raise ValueError("train_num_quantizers must lie in 1..num_quantizers")

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def frame_rate(self) -> int:
        return self.sample_rate // self.hop_length

    # Presets ---------------------------------------------------------------------------------------------------

    @classmethod
    def release(cls) -> "CodecConfig":
        """Paper size: EnCodec SEANet (32), MCRVQ 8 x 1024, Vocos 384/1152 x 12 with the attention block."""
        return cls()

    @classmethod
    def official(cls) -> "CodecConfig":
        """The official v2 checkpoint (``configs/languagecodec_mm.yaml``): as the release, without attention block."""
        return cls(decoder=DecoderConfig(attention=None))

    @classmethod
    def official_v1(cls) -> "CodecConfig":
        """The official v1 checkpoint (Feb 2024): 2048-entry codebooks and 8 backbone layers."""
        return cls(quantizer=QuantizerConfig(codebook_size=2048), decoder=DecoderConfig(num_layers=8, attention=None))

    @classmethod
    def mini(cls) -> "CodecConfig":
        """A CPU-trainable size: narrower encoder and decoder, same rates, codebooks and quantizer layout."""
        return cls(
            encoder=EncoderConfig(base_width=16),
            decoder=DecoderConfig(dim=256, intermediate_dim=768, num_layers=8, attention=AttentionConfig(
                resnet_blocks_before=1, resnet_blocks_after=1)),
        )

    @classmethod
    def tiny(cls, quantizer_kind: str = "mcrvq") -> "CodecConfig":
        """For tests: a few thousand parameters per part, the release's rates and quantizer layout."""
        return cls(
            encoder=EncoderConfig(base_width=4, latent_dim=24, lstm_layers=1),
            quantizer=QuantizerConfig(kind=quantizer_kind, codebook_size=64, kmeans_iters=5),
            decoder=DecoderConfig(dim=32, intermediate_dim=64, num_layers=2, attention=AttentionConfig(
                resnet_blocks_before=1, resnet_blocks_after=1, max_groups=8)),
        )

    # Serialization ---------------------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> "CodecConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CodecConfig":
        """Build from ``to_dict`` output; unknown fields are an error so a foreign file is not half-read."""
        try:
            return build(cls, data)
        except TypeError as err:  # a value of the wrong type deep in a nested config
            raise ValueError(f"invalid codec config: {err}") from None
