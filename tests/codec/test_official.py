"""Compatibility with the official Language-Codec code, proved on its numerical fixture (../shared/fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import CodecConfig, CodecError, LanguageCodec
from tests.conftest import shared_path
from toolkit.errors import InputError

FIXTURE = ("fixtures", "languagecodec_official")


def arr(name: str) -> np.ndarray:
    return np.load(shared_path(*FIXTURE, f"{name}.npy"))


@pytest.fixture(scope="module")
def official():
    return LanguageCodec.from_official_checkpoint(shared_path(*FIXTURE, "state_dict.safetensors"))


def test_architecture_read_from_weights(official):
    cfg = official.config
    assert cfg.encoder.base_width == 8 and cfg.encoder.ratios == (2, 4, 5, 8) and cfg.encoder.lstm_layers == 2
    assert (cfg.decoder.dim, cfg.decoder.intermediate_dim, cfg.decoder.num_layers) == (64, 192, 12)
    assert cfg.decoder.attention is None and cfg.quantizer.kind == "mcrvq"
    assert (official.sample_rate, official.frame_rate, official.num_codebooks, official.codebook_size) == (
        24000, 75, 8, 1024)


@pytest.mark.parametrize("wav, codes", [("input_wav", "codes"), ("input_wav_odd", "codes_odd")])
def test_codes_equal_official(official, wav, codes):
    ours = official.encode(torch.from_numpy(arr(wav))).numpy()
    ref = arr(codes).transpose(1, 0, 2)  # official [K, B, T] -> ours [B, K, T]
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def test_not_the_plain_rvq_trap(official):
    ours = official.encode(torch.from_numpy(arr("input_wav"))).numpy()
    assert (ours == arr("codes_rvq_encode_method").transpose(1, 0, 2)).mean() < 0.2


def test_latent_and_features(official):
    with torch.inference_mode():
        latent = official.encoder(torch.from_numpy(arr("input_wav")).unsqueeze(1))
        np.testing.assert_allclose(latent.numpy(), arr("encoder_latent"), atol=5e-4)
        codes = official.encode(torch.from_numpy(arr("input_wav")))
        np.testing.assert_array_equal(official.quantizer.decode(codes).numpy(), arr("features"))
        backbone = official.backbone(torch.from_numpy(arr("features")), torch.tensor([0]))
        np.testing.assert_allclose(backbone.numpy(), arr("backbone_out_bw0"), atol=1e-5)


@pytest.mark.parametrize("bandwidth_id", [0, 1, 2, 3])
def test_decoded_waveforms(official, bandwidth_id):
    codes = torch.from_numpy(arr("codes").transpose(1, 0, 2).copy())
    out = official.decode(codes, bandwidth_id=bandwidth_id)
    assert out.shape == (1, 1, 24000)
    np.testing.assert_allclose(out[:, 0].numpy(), arr(f"decoded_bw{bandwidth_id}"), atol=1e-5, rtol=0)


def test_decode_from_codes_nq4_and_odd(official):
    codes = official.encode(torch.from_numpy(arr("input_wav")))
    np.testing.assert_allclose(official.decode(codes)[:, 0].numpy(), arr("decoded_from_codes_bw0"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(official.decode(codes[:, :4])[:, 0].numpy(), arr("decoded_nq4_bw0"), atol=1e-5, rtol=0)
    odd = official.decode(official.encode(torch.from_numpy(arr("input_wav_odd"))))
    assert odd.shape == (1, 1, 20160)  # ceil(20000 / 320) * 320
    np.testing.assert_allclose(odd[:, 0].numpy(), arr("decoded_odd_bw0"), atol=1e-5, rtol=0)


def _lightning_ckpt(tmp_path, state):
    """An official-style Lightning checkpoint: generator keys plus discriminator and loss keys, beside metadata."""
    full = dict(state)
    full["multiperioddisc.discriminators.0.convs.0.weight"] = torch.zeros(2, 1, 5, 1)
    full["dacdiscriminator.discriminators.0.convs.0.weight"] = torch.zeros(2)
    full["melspec_loss.mel_spec.spectrogram.window"] = torch.zeros(4)
    path = tmp_path / "languagecodec_paper.ckpt"
    torch.save({"epoch": 7, "global_step": 1268768, "state_dict": full, "lr_schedulers": []}, path)
    return path


def test_lightning_ckpt_and_yaml(tmp_path, official):
    from safetensors.torch import load_file

    state = load_file(str(shared_path(*FIXTURE, "state_dict.safetensors")))
    ckpt = _lightning_ckpt(tmp_path, state)
    model = LanguageCodec.from_official_checkpoint(ckpt, config=shared_path(*FIXTURE, "config_reduced.yaml"))
    wav = torch.from_numpy(arr("input_wav"))
    assert torch.equal(model.encode(wav), official.encode(wav))


def test_yaml_that_disagrees_is_named(tmp_path):
    text = shared_path(*FIXTURE, "config_reduced.yaml").read_text().replace("num_layers: 12", "num_layers: 8")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(CodecError, match="backbone.num_layers=8 but the weights have 12"):
        LanguageCodec.from_official_checkpoint(shared_path(*FIXTURE, "state_dict.safetensors"), tmp_path / "c.yaml")


def test_mismatched_checkpoints_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    src = shared_path(*FIXTURE, "state_dict.safetensors")
    wrong = r"wrong shape: backbone\.convnext\.0\.dwconv\.bias \(64,\) \(expected \(384,\)\)"
    with pytest.raises(InputError, match=wrong):
        LanguageCodec.from_official_checkpoint(src, CodecConfig.official())  # release widths vs reduced weights
    state = load_file(str(src))
    del state["backbone.convnext.3.gamma"]
    save_file(state, str(tmp_path / "broken.safetensors"))
    with pytest.raises(InputError, match=r"missing 1 key\(s\): backbone\.convnext\.3\.gamma"):
        LanguageCodec.from_official_checkpoint(tmp_path / "broken.safetensors")
    state = load_file(str(src))
    state["feature_extractor.encodec.quantizer.vq.layers.0._codebook.extra"] = torch.zeros(1)
    save_file(state, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CodecError, match="unknown key"):
        LanguageCodec.from_official_checkpoint(tmp_path / "extra.safetensors")


class _Boom:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_no_code_is_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Boom()}, path)
    with pytest.raises(CodecError, match="weights only"):
        LanguageCodec.from_official_checkpoint(path)
    assert "unpickled code ran" not in capsys.readouterr().out
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError):
        LanguageCodec.from_official_checkpoint(tmp_path / "garbage.ckpt")
    with pytest.raises(CodecError, match="does not exist"):
        LanguageCodec.from_official_checkpoint(tmp_path / "missing.ckpt")
