"""AST's classification head: LayerNorm then Linear over the embedding."""

from __future__ import annotations

import torch
from torch import nn

from fastast_sb.models.checkpoints import (
    Pretrained,
    load_checked,
    read_pretrained,
)


class ASTHead(nn.Module):
    """AST's classification head: LayerNorm then Linear.

    Arguments
    ---------
    input_size, n_classes : int
        Embedding width D; output classes.
    norm_eps : float
        LayerNorm epsilon.

    Example
    -------
    >>> head = ASTHead(8, 3)
    >>> head(torch.randn(2, 1, 8)).shape
    torch.Size([2, 1, 3])
    """

    def __init__(
        self, input_size: int, n_classes: int, norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.norm = nn.LayerNorm(input_size, eps=norm_eps)
        self.linear = nn.Linear(input_size, n_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    @classmethod
    def from_pretrained(cls, path: str) -> ASTHead:
        """The classification head stored in a checkpoint (see ``load_ast``)."""
        ckpt = read_pretrained(path)
        if ckpt.head_state is None:
            raise ValueError(f"checkpoint {path} holds no classification head")
        return load_head(ckpt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] embeddings -> [..., n_classes] logits."""
        return self.linear(self.norm(x))


def load_head(ckpt: Pretrained) -> ASTHead:
    """The head of a checkpoint read by :func:`read_pretrained`."""
    cfg = {"norm_eps": ckpt.config.get("norm_eps", 1e-6), **ckpt.head_config}
    head = ASTHead(ckpt.config["embed_dim"], **cfg)
    return load_checked(head, ckpt.head_state, f"{ckpt.fmt} head")
