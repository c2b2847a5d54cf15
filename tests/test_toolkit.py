"""toolkit.config.build: the one strict builder of nested dataclass configs."""

from __future__ import annotations

import pytest

from codec.config import CodecConfig
from codec.discriminators import DiscriminatorConfig
from toolkit.config import build
from tts.models.mobilespeech import MobileSpeechConfig


def test_round_trips_nested_configs_with_tuples_and_optionals():
    codec = CodecConfig.official()  # attention None, layer_scale_init set, tuples inside
    assert build(CodecConfig, codec.to_dict()) == codec
    import json

    assert build(CodecConfig, json.loads(json.dumps(codec.to_dict()))) == codec  # lists come back as tuples
    discs = build(DiscriminatorConfig, {"resolutions": [[512, 128]], "bands": [[0.0, 1.0]]})
    assert discs.resolutions == ((512, 128),) and discs.bands == ((0.0, 1.0),)
    mobile = MobileSpeechConfig.mini(80)
    assert MobileSpeechConfig.from_dict(json.loads(json.dumps(mobile.to_dict()))) == mobile


def test_unknown_keys_are_named_by_their_path():
    with pytest.raises(ValueError, match="'decoder.attention.heads'"):
        build(CodecConfig, {"decoder": {"attention": {"heads": 2}}})
    with pytest.raises(ValueError, match="'bogus'"):
        build(CodecConfig, {"bogus": 1})
    with pytest.raises(ValueError, match="model.decoder must be a mapping"):
        build(MobileSpeechConfig, {"num_symbols": 8, "decoder": 3}, "model")
    assert build(CodecConfig, {"decoder": {"attention": None}}).decoder.attention is None


def test_overrides_expand_a_preset_shorthand_where_it_stands():
    from toolkit.config import apply_overrides

    data = {"model": {"decoder": "small"}, "codec": "mini"}
    apply_overrides(data, ["model.decoder.layers=3", "codec.quantizer.kind=rvq"])
    assert data == {"model": {"decoder": {"preset": "small", "layers": 3}},
                    "codec": {"preset": "mini", "quantizer": {"kind": "rvq"}}}
