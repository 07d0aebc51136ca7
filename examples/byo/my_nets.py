"""Your own model for jaxmnist: any Flax linen module (NNX and plain (init, apply) work too)."""

import flax.linen as nn


class MLP(nn.Module):
    """Two hidden layers with dropout; ``train`` switches dropout on."""

    width: int = 128
    dropout: float = 0.2

    @nn.compact
    def __call__(self, x, train: bool = False):
        """Images: float32 in [0, 1], ``[B, 28, 28, 1]``; returns logits ``[B, 10]``."""
        x = x.reshape(x.shape[0], -1)
        for _ in range(2):
            x = nn.relu(nn.Dense(self.width)(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(10)(x)


def make_mlp(width=128, dropout=0.2):
    """The factory a study names as ``"path/to/my_nets.py:make_mlp"``.

    Its keyword arguments come from the study's model config.
    """
    return MLP(width=width, dropout=dropout)
