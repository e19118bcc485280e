"""EncoderConfig: every knob of the encoder, validated once at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

POS_ENCODINGS = ("sinusoidal", "learned", "rope", "alibi", "alibi_directional", "none")
# naive and sdpa as written; auto picks per call from the measured table in results/kernel_table.json.
ATTENTION_KERNELS = ("naive", "sdpa", "auto")
ACTIVATIONS = ("relu", "gelu")


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(allowed)}")


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")


@dataclass(frozen=True)
class EncoderConfig:
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    dropout: float = 0.0
    norm_first: bool = True
    activation: str = "relu"
    pos_encoding: str = "sinusoidal"
    attention: str = "sdpa"
    max_len: int = 512
    vocab_size: int | None = 16  # token input; None means continuous input of `input_size` features
    input_size: int | None = None
    output_size: int | None = None  # head width; None means no head (return hidden states)
    layer_norm_eps: float = 1e-5
    causal: bool = False  # each position attends only to itself and earlier ones (a language model)
    kv_heads: int | None = None  # key/value heads, each shared by n_heads / kv_heads query heads (None: n_heads)
    window: int | None = None  # each query sees the keys within this distance (causal: the ones before it)

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_ff", "n_layers", "max_len"):
            _check_positive(name, getattr(self, name))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                f"n_heads must be one of {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0]}"
            )
        for name in ("kv_heads", "window"):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        if self.kv_heads is not None and self.n_heads % self.kv_heads:
            raise ValueError(
                f"kv_heads={self.kv_heads} must divide n_heads={self.n_heads}: one of "
                f"{[h for h in range(1, self.n_heads + 1) if self.n_heads % h == 0]}"
            )
        if self.pos_encoding == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"rope needs an even head size, got d_model/n_heads={self.d_model // self.n_heads}")
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _check_choice("attention", self.attention, ATTENTION_KERNELS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError(
                f"give exactly one of vocab_size (tokens) or input_size (continuous), "
                f"got vocab_size={self.vocab_size!r}, input_size={self.input_size!r}"
            )
        for name in ("vocab_size", "input_size", "output_size"):
            value = getattr(self, name)
            if value is not None:
                _check_positive(name, value)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
