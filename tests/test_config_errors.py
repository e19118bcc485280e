"""Bad configurations and inputs raise ValueError naming the value and what is allowed."""

import pytest
import torch

from model import Encoder, EncoderConfig, EncoderLayer


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"d_model": 30, "n_heads": 4}, r"d_model=30 is not divisible by n_heads=4.*\[1, 2, 3, 5, 6, 10, 15, 30\]"),
        ({"pos_encoding": "xpos"}, r"pos_encoding='xpos'.*sinusoidal, learned, rope, alibi, alibi_directional, none"),
        ({"attention": "flash"}, r"attention='flash'.*naive, sdpa, auto"),
        ({"activation": "swish"}, r"activation='swish'.*relu, gelu"),
        ({"n_layers": 0}, r"n_layers=0 must be a positive integer"),
        ({"dropout": 1.5}, r"dropout=1.5 must be in \[0, 1\)"),
        ({"vocab_size": None}, r"exactly one of vocab_size.*input_size"),
        ({"d_model": 12, "n_heads": 4, "pos_encoding": "rope"}, r"rope needs an even head size"),
    ],
)
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**kwargs)


def test_too_long_for_learned_positions():
    model = Encoder(EncoderConfig(pos_encoding="learned", max_len=16))
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds max_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_sinusoidal_extends_past_max_len():
    model = Encoder(EncoderConfig(pos_encoding="sinusoidal", max_len=16))
    assert model(torch.zeros(1, 40, dtype=torch.long)).shape == (1, 40, 64)


@pytest.mark.parametrize(
    "inputs", [torch.zeros(2, 5, 3, dtype=torch.long), torch.zeros(2, 5), torch.zeros(5, dtype=torch.long)]
)
def test_token_model_rejects_wrong_rank_or_dtype(inputs):
    with pytest.raises(ValueError, match=r"integer tensor of shape \(batch, seq\)"):
        Encoder(EncoderConfig())(inputs)


@pytest.mark.parametrize("inputs", [torch.zeros(2, 5, 4), torch.zeros(2, 5, 3, dtype=torch.long), torch.zeros(2, 5)])
def test_continuous_model_rejects_wrong_shape_or_dtype(inputs):
    with pytest.raises(ValueError, match=r"floating tensor of shape \(batch, seq, 3\)"):
        Encoder(EncoderConfig(vocab_size=None, input_size=3))(inputs)


def test_layer_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\(batch, seq, 32\).*\(2, 5, 16\)"):
        EncoderLayer(32, 4, 64)(torch.zeros(2, 5, 16))


def test_bad_padding_mask():
    with pytest.raises(ValueError, match=r"key_padding_mask must be a bool tensor of shape \(2, 5\)"):
        Encoder(EncoderConfig())(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5))
