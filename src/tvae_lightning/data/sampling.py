"""Samplers that split a data set over processes and resume inside an epoch.

Both samplers subclass :class:`~torch.utils.data.distributed.DistributedSampler`,
so Lightning keeps them as they are instead of wrapping them in a sampler of its
own, whatever ``Trainer(use_distributed_sampler=...)`` is set to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

log = logging.getLogger(__name__)


class ResumableDistributedSampler(DistributedSampler):
    """Shuffled training indices of one process that can resume mid-epoch.

    The order of an epoch is ``torch.randperm(len(dataset))`` from a generator
    seeded with ``seed + epoch``, the same on every process. It is padded with
    its own first indices to a multiple of ``num_replicas``, as
    ``DistributedSampler`` does, and process ``rank`` takes every
    ``num_replicas``-th index from position ``rank``. The order is therefore a
    function of ``(seed, epoch, rank, num_replicas)`` alone.

    ``position`` counts the indices of the current epoch that reached the model;
    :meth:`advance` adds to it and iteration starts there. The owner calls
    ``advance`` when a batch is used rather than when it is loaded, because data
    loader workers and prefetching load batches ahead. ``len`` stays the full
    epoch, so Lightning's batch count continues from the restored step.

    Args:
        dataset: the data set, used only for its length.
        num_replicas: number of processes that share the data set.
        rank: index of this process, in ``[0, num_replicas)``.
        seed: seed of the shuffled order.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        _check_rank(num_replicas, rank)
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
        )
        self.position = 0

    def epoch_indices(self) -> list[int]:
        """Return all indices of the current epoch for this process."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator)

        padding = self.total_size - len(order)
        if padding > 0:
            repeats = math.ceil(padding / len(order))
            order = torch.cat([order, order.repeat(repeats)[:padding]])
        return order[self.rank : self.total_size : self.num_replicas].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.position :])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first index, unless it is the current one.

        Lightning calls this at the start of every epoch, also right after a
        restore, so the restored position survives for the epoch it belongs to.
        """
        if epoch != self.epoch:
            self.position = 0
        self.epoch = epoch

    def advance(self, count: int) -> None:
        """Mark ``count`` more indices of the current epoch as used."""
        self.position = min(self.position + count, self.num_samples)

    def state_dict(self) -> dict[str, int]:
        """Return the epoch, the position in it and the layout it refers to."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "dataset_size": len(self.dataset),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a saved state.

        A finished epoch continues at the start of the next one. A state saved
        with another number of processes or another data set size restarts its
        epoch from the first index, because its position counts indices of a
        different split; a warning is logged.
        """
        epoch, position = int(state_dict["epoch"]), int(state_dict["position"])
        layout = (state_dict.get("num_replicas"), state_dict.get("dataset_size"))
        if layout != (self.num_replicas, len(self.dataset)):
            log.warning(
                "Training sampler state was saved with %s processes and %s "
                "samples, but this run has %d and %d; epoch %d restarts from "
                "its first batch.",
                layout[0],
                layout[1],
                self.num_replicas,
                len(self.dataset),
                epoch,
            )
            position = 0

        if position >= self.num_samples:
            epoch, position = epoch + 1, 0
        self.epoch, self.position = epoch, position


class ResumableDataLoader(DataLoader):
    """``DataLoader`` whose state is that of its :class:`ResumableDistributedSampler`.

    Lightning 2.x saves ``state_dict()`` of every training loader that has one
    in the checkpoint (under ``loops/fit_loop/state_dict/combined_loader``) and
    passes it to ``load_state_dict`` before the first batch of a resumed run.
    Under ``Trainer(overfit_batches=...)`` Lightning replaces the sampler with a
    ``SequentialSampler``, and the state is then empty.
    """

    def state_dict(self) -> dict[str, int]:
        if isinstance(self.sampler, ResumableDistributedSampler):
            return self.sampler.state_dict()
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict and isinstance(self.sampler, ResumableDistributedSampler):
            self.sampler.load_state_dict(state_dict)


class UnpaddedDistributedSampler(DistributedSampler):
    """Evaluation indices in order, split over processes without repeats.

    Process ``rank`` takes indices ``rank, rank + num_replicas, ...``, so every
    sample is evaluated exactly once: summed metric states then equal those of
    one process. ``DistributedSampler`` instead repeats samples until every
    process has the same count, which biases validation metrics. Processes may
    get one batch more or fewer than each other, which evaluation allows because
    it synchronises metrics only at the end of the epoch.

    Args:
        dataset: the data set, used only for its length.
        num_replicas: number of processes that share the data set.
        rank: index of this process, in ``[0, num_replicas)``.
    """

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0) -> None:
        _check_rank(num_replicas, rank)
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def all_gather_states(state: Tensor) -> list[Tensor]:
    """Return ``state`` of every process, indexed by global rank.

    Used for per-process generator states in a data module's ``state_dict``.
    Under ``torch.distributed`` every process must call it, as
    ``Trainer.save_checkpoint`` does for ``state_dict``; without a process
    group it returns ``[state]``.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def _check_rank(num_replicas: int, rank: int) -> None:
    if num_replicas < 1:
        raise ValueError(f"num_replicas must be a positive integer, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise ValueError(
            f"rank must be in [0, num_replicas) = [0, {num_replicas}), got {rank}"
        )
