"""attnbench's compact transformer encoder, written from scratch in PyTorch."""

from model.config import EncoderConfig
from model.encoder import Encoder
from model.layers import EncoderLayer

__all__ = ["Encoder", "EncoderConfig", "EncoderLayer"]
