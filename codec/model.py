"""Language-Codec: SEANet encoder -> MCRVQ (or RVQ) -> Vocos backbone -> ISTFT head, at 24 kHz and 75 frames/s."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .checkpoint import CONFIG_NAME, load_release, save_release
from .config import CodecConfig
from .decoder import VocosBackbone
from .encoder import SeanetEncoder
from .errors import CodecError
from .fast import MIN_SAMPLES, FastEncoder
from .heads import ISTFTHead
from .quantizer import QuantizerOutput, build_quantizer

BUNDLED_DIR = Path(__file__).resolve().parent / "assets" / "languagecodec-mini"


@dataclass
class CodecOutput:
    """What ``LanguageCodec.forward`` returns.

    Attributes:
        audio: reconstruction ``[B, 1, T * hop]``.
        codes: ``[B, K, T]``.
        commit_loss: scalar commitment loss (zero in eval mode).
        latent: encoder output ``[B, D, T]``.
        quantized: quantized latent ``[B, D, T]``.
        bandwidth_id: ``[1]`` the AdaLayerNorm row used by the decoder.
    """

    audio: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor
    latent: torch.Tensor
    quantized: torch.Tensor
    bandwidth_id: torch.Tensor


class LanguageCodec(nn.Module):
    """The codec. ``LanguageCodec(CodecConfig())`` is the release size with random weights.

    Attributes:
        sample_rate, frame_rate, hop_length, num_codebooks, codebook_size, config.
    """

    def __init__(self, config: Optional[CodecConfig] = None):
        super().__init__()
        config = config or CodecConfig()
        self.config = config
        self.encoder = SeanetEncoder(config.encoder)
        self.quantizer = build_quantizer(config.encoder.latent_dim, config.quantizer)
        self.backbone = VocosBackbone(config.encoder.latent_dim, config.decoder)
        self.head = ISTFTHead(config.decoder.dim, config.decoder.n_fft, config.hop_length,
                              config.decoder.max_magnitude)
        self._fast = None  # (weights version, FastEncoder), rebuilt when any encoder weight changes

    # Properties of the codec interface --------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> int:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def num_codebooks(self) -> int:
        return self.config.quantizer.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer.codebook_size

    @property
    def device(self) -> torch.device:
        return self.head.out.weight.device

    # Core ---------------------------------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor, bandwidth_id: Optional[Union[int, torch.Tensor]] = None,
                num_quantizers: Optional[int] = None, quantize: bool = True,
                frozen_encoder: bool = False) -> CodecOutput:
        """Encode, quantize and decode.

        Args:
            wav: ``[B, L]`` or ``[B, 1, L]`` at ``sample_rate``.
            bandwidth_id: AdaLayerNorm row; default: uniform random in training (as the official training), 0 in eval.
            num_quantizers: default: a random choice from ``train_num_quantizers`` in training, all in eval.
            quantize: False decodes the encoder's latent itself (a continuous warm-up of training): the quantizer is
                not called, so its codebooks neither update nor initialize; ``codes`` is then ``[B, 0, T]`` and the
                commitment loss zero.
            frozen_encoder: the encoder and the quantizer run in eval mode without autograd (decoder-only
                fine-tuning): the codebooks and their EMA state do not change, the codes are ``encode``'s and the
                commitment loss is zero.
        """
        wav = self._check_wav(wav)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_encoder), \
                _eval(self.encoder, frozen_encoder), _eval(self.quantizer, frozen_encoder):
            latent = self.encode_latent(wav)
            if quantize:
                q: QuantizerOutput = self.quantizer(latent, num_quantizers)
                quantized, codes, commit_loss = q.quantized, q.codes, q.commit_loss
            else:
                quantized, commit_loss = latent, latent.new_zeros(())
                codes = torch.zeros(latent.shape[0], 0, latent.shape[-1], dtype=torch.long, device=latent.device)
        if bandwidth_id is None and self.training:
            bandwidth_id = int(torch.randint(0, self.config.decoder.num_bandwidths, (1,)).item())
        bw = self._bandwidth(0 if bandwidth_id is None else bandwidth_id)
        audio = self.head(self.backbone(quantized, bw)).unsqueeze(1)
        return CodecOutput(audio=audio, codes=codes, commit_loss=commit_loss, latent=latent,
                           quantized=quantized, bandwidth_id=bw)

    def encode(self, wav: torch.Tensor, num_quantizers: Optional[int] = None) -> torch.Tensor:
        """Waveform ``[B, L]`` or ``[B, 1, L]`` -> codes ``LongTensor[B, K, ceil(L / hop)]``.

        Runs the same quantizer routine as ``forward`` (in eval mode), so the codes are the ones training sees.
        """
        return self.encode_with_latent(wav, num_quantizers)[0]

    def encode_with_latent(self, wav: torch.Tensor,
                           num_quantizers: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode``'s codes together with the encoder's latent ``[B, D, T]`` they quantize, from one encoder pass
        (``decode_latent(latent)`` is then the unquantized reconstruction)."""
        with torch.inference_mode(), _eval(self):
            latent = self.encode_latent(self._check_wav(wav))
            return self.quantizer(latent, num_quantizers or self.num_codebooks).codes, latent

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, D, T]`` for ``[B, 1, L]``.

        Without autograd and with the encoder in eval mode (inference, ``forward`` in eval mode under ``no_grad``, or
        ``forward``'s frozen encoder) a CPU input takes the fast path of ``codec/fast.py``, which equals
        ``self.encoder(wav)`` up to float rounding; ``encode`` and ``forward`` share this routine, so their codes are
        identical.
        """
        if wav.device.type != "cpu" or wav.shape[-1] < MIN_SAMPLES or torch.is_grad_enabled() or self.encoder.training:
            return self.encoder(wav)
        key = tuple((t.data_ptr(), t._version) for t in self.encoder.state_dict().values())
        if self._fast is None or self._fast[0] != key:
            self._fast = (key, FastEncoder(self.encoder))
        return self._fast[1](wav)

    def decode(self, codes: torch.Tensor, bandwidth_id: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        """Codes ``[B, K, T]`` (any K <= num_codebooks, or ``[K, T]``) -> waveform ``[B, 1, T * hop]``."""
        with torch.inference_mode(), _eval(self):
            codes = self._check_codes(codes)
            return self.decode_latent(self.quantizer.decode(codes), bandwidth_id)

    def decode_latent(self, latent: torch.Tensor, bandwidth_id: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        """A latent ``[B, D, T]`` (the quantizer's output, or the encoder's) -> waveform ``[B, 1, T * hop]``."""
        with torch.inference_mode(), _eval(self):
            return self.head(self.backbone(latent, self._bandwidth(bandwidth_id))).unsqueeze(1)

    def autoencode(self, wav: torch.Tensor, bandwidth_id: Union[int, torch.Tensor] = 0) -> torch.Tensor:
        """Waveform ``[B, L]`` or ``[B, 1, L]`` -> its latent decoded without quantization, ``[B, 1, T * hop]``: the
        autoencoder alone, so ``decode(encode(wav))`` against it shows what quantization costs."""
        with torch.inference_mode(), _eval(self):
            return self.decode_latent(self.encode_latent(self._check_wav(wav)), bandwidth_id)

    def encode_batch(self, wavs: Sequence[torch.Tensor], num_quantizers: Optional[int] = None,
                     max_batch_samples: Optional[int] = None) -> List[torch.Tensor]:
        """Encode utterances of different lengths, for tokenizing a corpus.

        Utterances are sorted by length and grouped into zero-padded batches of at most ``max_batch_samples``
        (count x longest), which keeps padding small. Default: one utterance at a time on a CPU (measured fastest
        there, ``benchmarks/codec_speed.py``), 40 s of audio per batch on other devices.

        Args:
            wavs: 1-D waveforms at ``sample_rate``.
        Returns:
            one ``LongTensor[K, ceil(L_i / hop)]`` per input, in input order. Frames whose receptive field reaches
            the zero padding (the last few of a shorter utterance in a batch) can differ from encoding it alone.
        """
        for w in wavs:
            if w.dim() != 1:
                raise CodecError(f"encode_batch expects 1-D waveforms, got shape {tuple(w.shape)}")
        if max_batch_samples is None:
            max_batch_samples = 1 if self.device.type == "cpu" else 40 * self.sample_rate
        lengths = [int(w.shape[-1]) for w in wavs]
        order = sorted(range(len(wavs)), key=lambda i: lengths[i], reverse=True)
        out: List[Optional[torch.Tensor]] = [None] * len(wavs)
        start = 0
        while start < len(order):
            longest = lengths[order[start]]
            size = max(1, min(len(order) - start, max_batch_samples // max(longest, 1)))
            group = order[start:start + size]
            batch = torch.zeros(len(group), longest, dtype=torch.float32, device=self.device)
            for row, i in enumerate(group):
                batch[row, : lengths[i]] = wavs[i].to(batch)
            codes = self.encode(batch, num_quantizers)
            for row, i in enumerate(group):
                out[i] = codes[row, :, : -(-lengths[i] // self.hop_length)]
            start += size
        return out

    # Validation ---------------------------------------------------------------------------------------------------

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(wav) or not wav.is_floating_point():
            raise CodecError("audio must be a floating-point tensor")
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise CodecError(f"audio must be [B, L] or [B, 1, L] mono, got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0 or wav.shape[0] == 0:
            raise CodecError("audio is empty")
        if not bool(torch.isfinite(wav).all()):
            raise CodecError("audio contains NaN or infinite samples")
        return wav.to(self.device, torch.float32)

    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(codes) or codes.is_floating_point() or codes.is_complex():
            raise CodecError("codes must be an integer tensor")
        if codes.dim() == 2:
            codes = codes.unsqueeze(0)
        if codes.dim() != 3:
            raise CodecError(f"codes must be [B, K, T] or [K, T], got shape {tuple(codes.shape)}")
        b, k, t = codes.shape
        if not 1 <= k <= self.num_codebooks:
            raise CodecError(f"codes have {k} codebooks; this codec has 1..{self.num_codebooks}")
        if t == 0 or b == 0:
            raise CodecError("codes are empty")
        lo, hi = int(codes.min()), int(codes.max())
        if lo < 0 or hi >= self.codebook_size:
            raise CodecError(f"codes out of range [0, {self.codebook_size}): found values {lo}..{hi}")
        return codes.to(self.device, torch.long)

    def _bandwidth(self, bandwidth_id: Union[int, torch.Tensor]) -> torch.Tensor:
        n = self.config.decoder.num_bandwidths
        bw = torch.as_tensor(bandwidth_id, dtype=torch.long, device=self.device).reshape(-1)
        if bw.numel() == 0 or int(bw.min()) < 0 or int(bw.max()) >= n:
            raise CodecError(f"bandwidth_id must be in 0..{n - 1}, got {bandwidth_id}")
        return bw

    def codes_sha256(self) -> str:
        """SHA-256 of what ``encode`` computes codes from: the sample rate, the encoder's and the quantizer's
        architecture, and the tensors they read (the codebooks' EMA statistics, which only training reads, left out).

        Two codecs with the same digest give the same codes for the same audio, whatever their decoders, so a token
        model trained on one runs on the other: decoder-only fine-tuning (``train.decoder_only``) keeps it. Tensors
        are hashed as float32 values (a zero's sign left out), so a float16 release and the model it loads as agree.
        """
        q = self.config.quantizer
        architecture = {"sample_rate": self.config.sample_rate, "encoder": asdict(self.config.encoder),
                        "quantizer": [q.kind, q.num_quantizers, q.codebook_size, q.num_groups]}
        digest = hashlib.sha256(json.dumps(architecture, sort_keys=True).encode())
        for part in ("encoder", "quantizer"):
            for name, tensor in getattr(self, part).state_dict().items():
                if name.endswith((".cluster_size", ".embed_avg")):
                    continue
                tensor = tensor.detach().cpu()
                tensor = tensor.float() + 0.0 if tensor.is_floating_point() else tensor  # + 0.0: -0.0 hashes as 0.0
                digest.update(f"{part}.{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()

    # Save and load ------------------------------------------------------------------------------------------------

    def save_pretrained(self, directory: Union[str, os.PathLike], dtype: Optional[torch.dtype] = None,
                        max_shard_bytes: Optional[int] = None, version: Optional[int] = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (each file atomically).

        Args:
            dtype: e.g. ``torch.float16`` for a small release; codebooks stay float32, loading casts back to float32.
            max_shard_bytes: instead of ``model.safetensors``, Hugging Face shards of at most this many bytes of
                tensor data each, ``model-00001-of-0000N.safetensors`` ..., and ``model.safetensors.index.json``.
            version: the release's own version number, for a frozen codec (``codec.read_release_version``).
        """
        return save_release(self, directory, dtype, max_shard_bytes, version)

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike], map_location: Union[str, torch.device] = "cpu",
                        ) -> "LanguageCodec":
        """Load a release directory written by ``save_pretrained`` (one weights file or shards); the model is returned
        in eval mode."""
        return load_release(cls, directory, map_location)

    @classmethod
    def bundled(cls, map_location: Union[str, torch.device] = "cpu") -> "LanguageCodec":
        """The codec shipped inside this package (trained on the mini corpus; see README for its quality)."""
        if not (BUNDLED_DIR / CONFIG_NAME).is_file():
            raise CodecError(f"this installation has no bundled codec ({BUNDLED_DIR} is missing)")
        return cls.from_pretrained(BUNDLED_DIR, map_location)

    @classmethod
    def from_official_checkpoint(cls, path: Union[str, os.PathLike], config: Union[None, CodecConfig, str,
                                 os.PathLike] = None) -> "LanguageCodec":
        """Load a checkpoint released by the official Language-Codec project.

        Args:
            path: Lightning ``.ckpt`` (with ``state_dict``), or a safetensors / ``torch.save`` state dict with the
                official key names.
            config: ``None`` (the v2 ``languagecodec_mm.yaml`` architecture, with sizes read from the weights), a
                ``CodecConfig``, or the path of an official config yaml.
        """
        from .official import load_official
        return load_official(cls, path, config)


def load_codec(checkpoint: Optional[Union[str, os.PathLike]] = None,
               official_config: Optional[Union[str, os.PathLike]] = None) -> LanguageCodec:
    """A release directory of this project, an official Language-Codec checkpoint file, or (None) the bundled codec."""
    if checkpoint is None:
        return LanguageCodec.bundled()
    path = Path(checkpoint)
    if path.is_dir():
        return LanguageCodec.from_pretrained(path)
    if path.is_file():
        return LanguageCodec.from_official_checkpoint(path, official_config)
    raise CodecError(f"checkpoint {path} does not exist")


class _eval:
    """Context manager: eval mode inside (when ``active``), the previous mode restored after."""

    def __init__(self, module: nn.Module, active: bool = True):
        self.module, self.was_training = module, module.training and active

    def __enter__(self) -> None:
        if self.was_training:
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        if self.was_training:
            self.module.train()

