"""Loading checkpoints released by the official Language-Codec project.

The official generator is a Vocos model whose feature extractor wraps an EnCodec SEANet encoder and the MCRVQ
quantizer. Its state dict maps onto ``LanguageCodec`` by renaming; discriminator, loss and unused SEANet-decoder keys
are ignored. Sizes are read from the weights, so the v2 checkpoint (``languagecodec_mm.yaml``), the v1 checkpoint
(2048-entry codebooks, 8 backbone layers) and reduced variants all load; an official config yaml, when given, is
checked against the weights.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from toolkit.weights import load_safetensors, load_strict

from .config import CodecConfig, DecoderConfig, EncoderConfig, QuantizerConfig
from .errors import CodecError

ENCODER = "feature_extractor.encodec.encoder.model."
QUANTIZER = "feature_extractor.encodec.quantizer.vq.layers."
IGNORED_PREFIXES = (
    "feature_extractor.encodec.decoder.",  # the SEANet decoder, unused: the Vocos backbone decodes
    "multiperioddisc.", "multiresddisc.", "dac.", "dacdiscriminator.", "melspec_loss.",
)
WINDOW_KEY = "head.istft.window"


def read_official_state(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """The generator's tensors from an official ``.ckpt`` / state-dict file, loaded without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        state = load_safetensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # garbage bytes raise anything from the unpickler (IndexError, KeyError, ...)
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CodecError(f"cannot load {path} as weights only (no code is unpickled): {first}") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CodecError(f"{path} holds no state dict of tensors")
    if not any(k.startswith(ENCODER) for k in state):
        raise CodecError(f"{path} is not an official Language-Codec checkpoint (no '{ENCODER}*' keys); "
                         "releases of this project load with LanguageCodec.from_pretrained")
    return state


def convert_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename official keys to this project's; ignored keys are dropped, unknown keys are an error."""
    # The official encoder is one nn.Sequential: conv, (residual unit, ELU, strided conv) per stage, [LSTM], ELU, conv;
    # so the last index is 3 * stages + 3 with an LSTM (at 3 * stages + 1) and 3 * stages + 2 without.
    last = max(int(m.group(1)) for k in state if (m := re.match(re.escape(ENCODER) + r"(\d+)\.", k)))
    has_lstm = any(k.startswith(f"{ENCODER}{last - 2}.lstm.") for k in state)
    stages = (last - 3) // 3 if has_lstm else (last - 2) // 3
    out, unknown = {}, []
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES) or key == WINDOW_KEY:
            continue
        new = _rename(key, stages, has_lstm)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise CodecError(f"unknown key(s) in official checkpoint: {', '.join(sorted(unknown)[:3])}"
                         + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""))
    if WINDOW_KEY in state:
        window = state[WINDOW_KEY].float()
        if not torch.allclose(window, torch.hann_window(window.numel()), atol=1e-6):
            raise CodecError("the checkpoint's ISTFT window is not a periodic Hann window")
    return out


def _rename(key: str, stages: int, has_lstm: bool) -> Optional[str]:
    if key.startswith(("backbone.", "head.out.")):
        return key
    m = re.fullmatch(re.escape(QUANTIZER) + r"(\d+)\._codebook\.(inited|cluster_size|embed|embed_avg)", key)
    if m:
        return f"quantizer.layers.{m.group(1)}.codebook.{m.group(2)}"
    m = re.fullmatch(re.escape(ENCODER) + r"(\d+)\.(.+)", key)
    if not m:
        return None
    index, rest = int(m.group(1)), m.group(2)
    last = 3 * stages + (3 if has_lstm else 2)
    if has_lstm and index == 3 * stages + 1 and rest.startswith("lstm."):
        return f"encoder.lstm.{rest}"
    conv = re.fullmatch(r"conv\.conv\.(weight_g|weight_v|bias)", rest)
    if index == 0 and conv:
        return f"encoder.stem.conv.{conv.group(1)}"
    if index == last and conv:
        return f"encoder.proj.conv.{conv.group(1)}"
    stage, pos = divmod(index - 1, 3)
    if stage >= stages:
        return None
    if pos == 2 and conv:
        return f"encoder.stages.{stage}.down.conv.{conv.group(1)}"
    unit = re.fullmatch(r"(block\.1|block\.3|shortcut)\.conv\.conv\.(weight_g|weight_v|bias)", rest)
    if pos == 0 and unit:
        name = {"block.1": "conv1", "block.3": "conv2", "shortcut": "shortcut"}[unit.group(1)]
        return f"encoder.stages.{stage}.residual.{name}.conv.{unit.group(2)}"
    return None


def infer_config(state: Dict[str, torch.Tensor], sample_rate: int = 24000) -> CodecConfig:
    """The architecture of a converted official state dict, read from its shapes (official: no attention block)."""
    try:
        stem = state["encoder.stem.conv.weight_v"]
        num_stages = _count(state, r"encoder\.stages\.(\d+)\.down")
        downs = [state[f"encoder.stages.{i}.down.conv.weight_v"] for i in range(num_stages)]
        conv1 = state["encoder.stages.0.residual.conv1.conv.weight_v"]
        proj = state["encoder.proj.conv.weight_v"]
        encoder = EncoderConfig(
            base_width=stem.shape[0], ratios=tuple(d.shape[2] // 2 for d in downs), latent_dim=proj.shape[0],
            lstm_layers=_count(state, r"encoder\.lstm\.lstm\.weight_ih_l(\d+)"), kernel_size=stem.shape[2],
            last_kernel_size=proj.shape[2], residual_kernel_size=conv1.shape[2],
            compress=conv1.shape[1] // conv1.shape[0],
        )
        num_q = _count(state, r"quantizer\.layers\.(\d+)\.codebook\.embed")
        quantizer = QuantizerConfig(kind="mcrvq", num_quantizers=num_q,
                                    codebook_size=state["quantizer.layers.0.codebook.embed"].shape[0],
                                    train_num_quantizers=tuple(range(min(3, num_q), num_q + 1)))
        embed = state["backbone.embed.weight"]
        decoder = DecoderConfig(
            dim=embed.shape[0], kernel_size=embed.shape[2],
            intermediate_dim=state["backbone.convnext.0.pwconv1.weight"].shape[0],
            num_layers=_count(state, r"backbone\.convnext\.(\d+)\.dwconv\.weight"),
            num_bandwidths=state["backbone.norm.scale.weight"].shape[0], attention=None,
            n_fft=state["head.out.weight"].shape[0] - 2,
        )
        return CodecConfig(sample_rate=sample_rate, encoder=encoder, quantizer=quantizer, decoder=decoder)
    except KeyError as err:
        raise CodecError(f"official checkpoint lacks {err.args[0]} (after renaming); is it a Language-Codec "
                         "generator?") from None
    except ValueError as err:
        raise CodecError(f"official checkpoint has an inconsistent architecture: {err}") from None


def _count(state: Dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def config_from_yaml(path: Union[str, os.PathLike], inferred: CodecConfig) -> CodecConfig:
    """Check an official config yaml against the weights and take its sample rate; name any disagreement."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
        model = data["model"]["init_args"]
        backbone = model["backbone"]["init_args"]
        head = model["head"]["init_args"]
        bandwidths = model["feature_extractor"]["init_args"].get("bandwidths", [])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise CodecError(f"cannot read official config {path}: {type(err).__name__} {err}") from None
    dec = inferred.decoder
    checks = {
        "backbone.dim": (backbone.get("dim"), dec.dim),
        "backbone.intermediate_dim": (backbone.get("intermediate_dim"), dec.intermediate_dim),
        "backbone.num_layers": (backbone.get("num_layers"), dec.num_layers),
        "backbone.input_channels": (backbone.get("input_channels"), inferred.encoder.latent_dim),
        "backbone.adanorm_num_embeddings": (backbone.get("adanorm_num_embeddings"), dec.num_bandwidths),
        "head.dim": (head.get("dim"), dec.dim),
        "head.n_fft": (head.get("n_fft"), dec.n_fft),
        "head.hop_length": (head.get("hop_length"), inferred.hop_length),
        "feature_extractor.bandwidths (count)": (len(bandwidths) or None, dec.num_bandwidths),
    }
    wrong = [f"{name}={cfg} but the weights have {have}" for name, (cfg, have) in checks.items()
             if cfg is not None and cfg != have]
    if head.get("padding", "same") != "same":
        wrong.append(f"head.padding={head['padding']!r}; only 'same' is supported")
    if wrong:
        raise CodecError(f"official config {path} does not match the checkpoint: " + "; ".join(wrong))
    return inferred.replace(sample_rate=int(model.get("sample_rate", inferred.sample_rate)))


def load_official(cls: type, path: Union[str, os.PathLike],
                  config: Union[None, CodecConfig, str, os.PathLike] = None):
    state = convert_state(read_official_state(path))
    if isinstance(config, CodecConfig):
        chosen = config
    else:
        chosen = infer_config(state)
        if config is not None:
            chosen = config_from_yaml(config, chosen)
    if chosen.decoder.attention is not None:
        raise CodecError("official checkpoints have no attention block; use a config with decoder.attention=None")
    model = cls(chosen)
    load_strict(model, state, source=str(path))
    return model.eval()

