"""The one-GPU configs: they load, keep the bundled (mini) architectures, so a GPU run can continue a bundled release,
and take their optimization from the published recipes they cite."""

from __future__ import annotations

from pathlib import Path

from codec.training import load_train_config
from tts.training import load_token_train_config

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_codec_gpu_config_is_the_mini_codec_with_the_official_optimization():
    gpu = load_train_config(RECIPES / "codec/configs/gpu.yaml")
    mini = load_train_config(RECIPES / "codec/configs/mini.yaml")
    release = load_train_config(RECIPES / "codec/configs/release.yaml")
    assert gpu.codec.to_dict() | {"quantizer": None} == mini.codec.to_dict() | {"quantizer": None}
    assert gpu.codec.quantizer.threshold_ema_dead_code == 2
    assert gpu.discriminators == release.discriminators
    assert mini.repeat_factors and gpu.repeat_factors is None  # a pack's clips have no speakers to weight
    assert (gpu.batch_size, gpu.segment_seconds, gpu.learning_rate) == (100, 1.0, 2e-4)
    assert gpu.mixed_precision == "bf16" and gpu.reconstruction_only_steps == 0


def test_token_gpu_configs_keep_the_mini_models():
    for model in ("valle", "mobilespeech"):
        gpu = load_token_train_config(RECIPES / model / "configs/gpu.yaml", 80, 8, 1024)
        mini = load_token_train_config(RECIPES / model / "configs/mini.yaml", 80, 8, 1024)
        assert gpu.model.to_dict() == mini.model.to_dict(), model
        assert (gpu.max_duration, gpu.warmup_steps, gpu.mixed_precision) == (320, 200, "bf16"), model
        assert gpu.learning_rate == mini.learning_rate, model
