"""The shared transformer's dropout: the CPU mask's statistics and gradient, and the attention-dropout option."""

from pathlib import Path

import pytest
import torch

from toolkit.config import build
from tts.models.valle import ValleConfig
from tts.modules.transformer import Block, Dropout, TransformerConfig

ROOT = Path(__file__).resolve().parents[2]


def test_dropout_drops_the_configured_share_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = Dropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.002
    assert abs(y.mean().item() - 1.0) < 0.003
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - 3277 / 32768)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * mask * scale)/dx = mask * scale, and x is ones


def test_dropout_is_identity_in_eval_and_at_zero_and_reproducible_from_the_seed():
    x = torch.randn(64, 33)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    torch.manual_seed(5)
    a = Dropout(0.3).train()(x)
    torch.manual_seed(5)
    b = Dropout(0.3).train()(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, Dropout(0.3).train()(x))
    # every element of an odd-sized tensor gets its own draw: each position is dropped somewhere over 50 draws
    drops = torch.stack([Dropout(0.5).train()(torch.ones(7, 3)) == 0 for _ in range(50)])
    assert drops.any(0).all() and (~drops).any(0).all()


def test_attention_dropout_defaults_to_dropout_and_can_be_switched_off():
    block = Block(TransformerConfig(dim=16, heads=2, layers=1, ffn_dim=32, dropout=0.2, cross_attention=True))
    assert block.attn.dropout == block.cross.dropout == 0.2 and block.drop.p == 0.2
    block = Block(TransformerConfig(dim=16, heads=2, layers=1, ffn_dim=32, dropout=0.2, attention_dropout=0.0))
    assert block.attn.dropout == 0.0 and block.drop.p == 0.2
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="attention_dropout"):
            TransformerConfig(attention_dropout=bad)


def test_configs_written_before_attention_dropout_load_with_the_earlier_behaviour():
    saved = ValleConfig.mini(40).to_dict()
    del saved["transformer"]["attention_dropout"]
    config = build(ValleConfig, saved)
    assert config.transformer.attention_dropout is None and config == ValleConfig.mini(40)
    override = build(ValleConfig, {**saved, "transformer": {**saved["transformer"], "attention_dropout": 0.0}})
    assert override.transformer.attention_dropout == 0.0


@pytest.mark.parametrize("model", ["valle", "mobilespeech"])
def test_recipe_configs_switch_attention_dropout_off_on_cpu_sizes_only(model):
    from tts.training import load_token_train_config

    def transformers(name):
        config = load_token_train_config(ROOT / "recipes" / model / "configs" / f"{name}.yaml", 60, 8, 1024).model
        return [getattr(config, k) for k in ("transformer", "text", "prompt", "decoder") if hasattr(config, k)]

    assert all(t.dropout == 0.1 and t.attention_dropout == 0.0 for t in transformers("mini"))
    assert all(t.dropout == 0.1 and t.attention_dropout is None for t in transformers("paper"))
