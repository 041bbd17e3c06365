"""Samplers: label-balanced training draws and DDP evaluation shards.

* :class:`LabelBalancedSampler` draws training examples with replacement,
  example ``i`` with label set ``Y_i`` weighted by
  ``sum_{c in Y_i} 1 / (n_c + smoothing)`` (``n_c``: training examples of
  class ``c``), the class-balanced sampling of the full AudioSet in PSLA
  (Gong et al., IEEE/ACM TASLP 2021) and AST, written from that description.
* :class:`EvalShardSampler` gives each DDP process every ``world``-th index
  of an evaluation set from its rank, without the padding of PyTorch's
  ``DistributedSampler``: each example is evaluated once, so gathered
  metrics are exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def label_balanced_weights(
    labels: Sequence[Sequence[str]], smoothing: float = 0.0
) -> torch.Tensor:
    """[N] float64 weights: over each example's label set, the sum of
    ``1 / (count + smoothing)`` (larger ``smoothing``: closer to uniform).

    Example
    -------
    >>> label_balanced_weights([["a"], ["a"], ["a", "b"]]).tolist()
    [0.3333333333333333, 0.3333333333333333, 1.3333333333333333]
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0, got {smoothing}")
    counts = Counter(c for example in labels for c in example)
    weights = []
    for i, example in enumerate(labels):
        if not example:
            raise ValueError(f"example {i} has no label; expected at least one")
        weights.append(sum(1.0 / (counts[c] + smoothing) for c in example))
    return torch.tensor(weights, dtype=torch.float64)


class LabelBalancedSampler(Sampler):
    """Draw ``num_samples`` indices with replacement, rare labels favoured.

    Draws come from torch's global generator, which
    :class:`~fastast_sb.brain.FastASTBrain` reseeds from (seed, epoch) each
    training epoch: a resumed run repeats them, and all DDP processes draw
    the same list before ``DistributedSamplerWrapper`` shares it out.

    Arguments
    ---------
    labels : sequence of sequences of str
        Label set of each training example (in dataset order).
    num_samples : int, optional
        Draws per epoch; the number of examples by default.
    smoothing : float
        See :func:`label_balanced_weights`.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> sampler = LabelBalancedSampler([["a"]] * 9 + [["b"]])
    >>> draws = list(sampler)
    >>> len(draws), sum(i == 9 for i in draws) > 1
    (10, True)
    """

    def __init__(
        self,
        labels: Sequence[Sequence[str]],
        num_samples: Optional[int] = None,
        smoothing: float = 0.0,
    ) -> None:
        if len(labels) == 0:
            raise ValueError("cannot balance an empty dataset")
        self.weights = label_balanced_weights(labels, smoothing)
        self.num_samples = len(labels) if num_samples is None else num_samples
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        draws = torch.multinomial(self.weights, self.num_samples, True)
        return iter(draws.tolist())


class EvalShardSampler(Sampler):
    """This process's share of an evaluation set: ``range(rank, n, world)``.

    Only the length of ``data_source`` is used; ``rank`` and
    ``num_replicas`` come from the ``torch.distributed`` group by default
    (rank 0 of 1 without one).

    Example
    -------
    >>> list(EvalShardSampler(range(5), rank=1, num_replicas=2))
    [1, 3]
    >>> len(EvalShardSampler(range(5), rank=0, num_replicas=2))
    3
    """

    def __init__(
        self,
        data_source: Sequence,
        rank: Optional[int] = None,
        num_replicas: Optional[int] = None,
    ) -> None:
        grouped = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if grouped else 1
        if rank is None:
            rank = dist.get_rank() if grouped else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank {rank} is not in [0, {num_replicas}) (num_replicas)"
            )
        self.n = len(data_source)
        self.rank = rank
        self.num_replicas = num_replicas

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))
