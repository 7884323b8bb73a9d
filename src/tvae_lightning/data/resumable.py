"""Base data module whose loaders split data over processes and resume exactly."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tvae_lightning.data.sampling import (
    ResumableDataLoader,
    ResumableDistributedSampler,
    UnpaddedDistributedSampler,
    all_gather_states,
)

log = logging.getLogger(__name__)


def collate_stacked(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Pass through a batch that the data set's ``__getitems__`` already stacked."""
    return batch


class ResumableDataModule(L.LightningDataModule):
    """Data module with a training generator per process and resumable loaders.

    Training sequences are drawn from :attr:`train_generator`, seeded with
    ``seed`` plus 1000 times the global rank of the process, and
    :meth:`state_dict` saves the generator state of every process. Training
    loaders from :meth:`_loader` reshuffle every epoch as a function of
    ``(seed, epoch, rank)`` and resume mid-epoch. Evaluation loaders give every
    sample to exactly one process, so no sample is evaluated twice under DDP.

    Subclasses save ``seed``, ``batch_size`` and ``num_workers`` with
    ``save_hyperparameters()``, call :meth:`_seed_train_generator` in ``setup``
    and :meth:`_advance_train_sampler` in ``on_after_batch_transfer``. Their data
    sets return a whole batch, as a dict of tensors, from ``__getitems__``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.train_generator = torch.Generator()
        self._rank_seeded = False
        self.train_sampler: ResumableDistributedSampler | None = None
        # Data sets that the default loader methods serve; set them in setup().
        self.train_source: Dataset | None = None
        self.val_source: Dataset | None = None
        self.test_source: Dataset | None = None

    def _seed_train_generator(self) -> None:
        if self._rank_seeded:
            return
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.train_generator.manual_seed(self.hparams.seed + 1000 * rank)
        self._rank_seeded = True

    def _world(self) -> tuple[int, int]:
        """Return the number of processes and the global rank of this one."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        """Return a loader whose sampler splits ``dataset`` over the processes.

        Training uses a :class:`ResumableDistributedSampler` in a
        :class:`ResumableDataLoader`, which reshuffles every epoch and which
        Lightning saves in checkpoints and resumes mid-epoch. Evaluation uses an
        :class:`UnpaddedDistributedSampler`, so every sequence is evaluated
        once, whatever the number of processes.
        """
        if dataset is None:
            raise RuntimeError("call setup() before requesting a data loader")
        world_size, rank = self._world()
        loader_class = DataLoader
        if train:
            sampler = ResumableDistributedSampler(
                dataset, world_size, rank, seed=self.hparams.seed
            )
            self.train_sampler = sampler
            loader_class = ResumableDataLoader
        else:
            sampler = UnpaddedDistributedSampler(dataset, world_size, rank)

        return loader_class(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_stacked,
            persistent_workers=self.hparams.num_workers > 0,
            # The loader draws a worker seed from this generator at every new
            # iterator. With the default global generator that draw would
            # shift the model's random stream, and a resumed run would differ.
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_source, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_source, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_source, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_source, train=False)

    def _advance_train_sampler(self, count: int) -> None:
        """Mark ``count`` training samples as used while the trainer trains.

        Lightning moves a batch to the device right before the step that uses
        it, so calling this from ``on_after_batch_transfer`` counts the training
        samples consumed, not those loaded ahead by workers.
        """
        training = self.trainer is not None and self.trainer.training
        if training and self.train_sampler is not None:
            self.train_sampler.advance(count)

    def state_dict(self) -> dict[str, Any]:
        """Return the training generator state of every process, by global rank.

        Under DDP this gathers from all processes, so every process must call
        it, as ``Trainer.save_checkpoint`` does. The position in the epoch is
        saved by Lightning through :class:`ResumableDataLoader`.
        """
        state = self.train_generator.get_state()
        return {"train_generators": all_gather_states(state)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training generator of this process."""
        world_size, rank = self._world()
        # Older checkpoints contain one state, under "train_generator".
        states = state_dict.get("train_generators") or [state_dict["train_generator"]]
        if len(states) == world_size:
            self.train_generator.set_state(states[rank])
        else:
            log.warning(
                "Checkpoint contains training generator states of %d processes "
                "but this run has %d; process %d keeps the generator seeded "
                "with seed + 1000 * rank.",
                len(states), world_size, rank,
            )
        self._rank_seeded = True
