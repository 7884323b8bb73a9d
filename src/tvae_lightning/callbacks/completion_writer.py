"""Prediction writer that stores sequence completions and their errors."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torchvision.utils import save_image

from tvae_lightning.callbacks.image_logging import (
    check_positive_int,
    frame_grid,
    image_folder,
)
from tvae_lightning.models.completion import check_num_observed

log = logging.getLogger(__name__)

FRAME_COLUMNS = (
    "sequence",
    "frame",
    "offset",
    "observed",
    "mse",
    "bce",
    "repeat_mse",
)
"""Columns of ``frame_errors.csv``; see :class:`CompletionWriter`."""


def frame_errors(
    frames: Tensor, completed: Tensor, num_observed: int
) -> dict[str, Tensor]:
    """Return per-frame errors of completions, each ``(batch, seq_len)``.

    ``mse`` is the mean squared error over pixels, ``bce`` the binary
    cross-entropy summed over pixels (nats, the training loss's
    reconstruction term), and ``repeat_mse`` the mean squared error of the
    baseline that repeats the last observed true frame.
    """
    dims = (2, 3, 4)
    mse = (completed - frames).pow(2).mean(dim=dims)
    probabilities = completed.clamp(1e-6, 1.0 - 1e-6)
    bce = F.binary_cross_entropy(probabilities, frames, reduction="none").sum(dim=dims)
    last = frames[:, num_observed - 1 : num_observed]
    repeat_mse = (last - frames).pow(2).mean(dim=dims)
    return {"mse": mse, "bce": bce, "repeat_mse": repeat_mse}


class CompletionWriter(BasePredictionWriter):
    """Write the completions of ``predict`` as PNG grids and their errors as CSV/JSON.

    Works with the ``predict_step`` of
    :class:`~tvae_lightning.models.SequenceVAE`, which completes each sequence
    from its first ``predict_num_observed`` frames. For every batch it writes
    ``completion_batch<NNNNN>.png``: for each of the first
    ``max_sequences_per_image`` sequences, a row of true frames over a row of
    completed frames (the first ``num_observed`` completed frames are
    reconstructions). It appends one row per sequence and frame to
    ``frame_errors.csv`` with the columns

    - ``sequence``: index of the sequence in the prediction data set,
    - ``frame``: frame index ``l``,
    - ``offset``: ``l - (num_observed - 1)``, the steps after the last observed
      frame (0 or less for observed frames),
    - ``observed``: 1 for observed frames, else 0,
    - ``mse``, ``bce``, ``repeat_mse``: see :func:`frame_errors`.

    At the end it writes the means over all sequences per frame to
    ``completion_errors.json`` and ``completion_errors_by_offset.csv``.

    Args:
        output_dir: folder of the files; ``<trainer.log_dir>/completions`` when
            ``None``.
        num_observed: when given, replaces the model's ``predict_num_observed``
            for this run.
        average: when given, replaces the model's ``average_completion``.
        max_sequences_per_image: sequences drawn in each batch's PNG.
        max_image_batches: write PNGs of the first this many batches only; every
            batch when ``None``. Errors cover every batch either way.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        num_observed: int | None = None,
        average: bool | None = None,
        max_sequences_per_image: int = 8,
        max_image_batches: int | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        check_positive_int("max_sequences_per_image", max_sequences_per_image)
        if max_image_batches is not None:
            check_positive_int("max_image_batches", max_image_batches)
        if num_observed is not None:
            check_positive_int("num_observed", num_observed)
        self.output_dir = output_dir
        self.num_observed = num_observed
        self.average = average
        self.max_sequences_per_image = max_sequences_per_image
        self.max_image_batches = max_image_batches
        self.folder: Path | None = None
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.num_sequences = 0
        self.images_written = 0
        self.run_num_observed: int | None = None
        self.run_average: bool | None = None

    def setup(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str
    ) -> None:
        # trainer.log_dir broadcasts from rank zero, so all ranks resolve it here.
        if stage == "predict":
            self.folder = image_folder(trainer, self.output_dir, "completions")

    def on_predict_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        if self.num_observed is not None:
            check_num_observed(self.num_observed, pl_module.seq_len, "num_observed")
            pl_module.predict_num_observed = self.num_observed
        if self.average is not None:
            pl_module.average_completion = self.average

        self._reset()
        if self.folder is None:
            self.folder = image_folder(trainer, self.output_dir, "completions")
        self.folder.mkdir(parents=True, exist_ok=True)
        csv_path = self.file_path(trainer, "frame_errors.csv")
        self._csv_file = csv_path.open("w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(FRAME_COLUMNS)

    def file_path(self, trainer: L.Trainer, name: str) -> Path:
        """Return ``folder / name``, with ``_rank<R>`` before the suffix under DDP."""
        # NOTE: multi-process prediction is untested. Each rank writes its own
        # files and summary, and nothing merges them into one.
        if trainer.world_size > 1:
            path = Path(name)
            name = f"{path.stem}_rank{trainer.global_rank}{path.suffix}"
        return self.folder / name

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        frames = prediction["frames"].float()
        completed = prediction["completed"].float()
        num_observed = int(prediction["num_observed"])
        self.run_num_observed = num_observed
        self.run_average = bool(prediction.get("average", False))

        errors = frame_errors(frames, completed, num_observed)
        self.write_rows(errors, num_observed, batch_indices, batch_idx)
        for key, values in errors.items():
            total = values.sum(dim=0).double().cpu()
            self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.num_sequences += frames.shape[0]

        within_limit = (
            self.max_image_batches is None
            or self.images_written < self.max_image_batches
        )
        if within_limit:
            self.write_grid(trainer, frames, completed, batch_idx, dataloader_idx)

    def write_rows(
        self,
        errors: dict[str, Tensor],
        num_observed: int,
        batch_indices: Any,
        batch_idx: int,
    ) -> None:
        """Append one CSV row per sequence and frame."""
        batch, seq_len = errors["mse"].shape
        if batch_indices is not None and len(batch_indices) == batch:
            sequences = torch.as_tensor(list(batch_indices), dtype=torch.float64)
        else:
            # Without the sampler's indices, count the sequences seen so far.
            start = self.num_sequences
            sequences = torch.arange(start, start + batch, dtype=torch.float64)

        frame = torch.arange(seq_len, dtype=torch.float64)
        columns = [
            sequences.unsqueeze(1).expand(batch, seq_len),
            frame.expand(batch, seq_len),
            (frame - (num_observed - 1)).expand(batch, seq_len),
            (frame < num_observed).double().expand(batch, seq_len),
            errors["mse"].double().cpu(),
            errors["bce"].double().cpu(),
            errors["repeat_mse"].double().cpu(),
        ]
        table = torch.stack(columns, dim=-1).flatten(0, 1).tolist()
        self._csv.writerows(
            [int(row[0]), int(row[1]), int(row[2]), int(row[3]), *row[4:]]
            for row in table
        )

    def write_grid(
        self,
        trainer: L.Trainer,
        frames: Tensor,
        completed: Tensor,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Save true frames over completed frames for the first sequences."""
        count = self.max_sequences_per_image
        rows = torch.stack([frames[:count], completed[:count]], dim=1).flatten(0, 1)
        loader = f"_loader{dataloader_idx}" if dataloader_idx else ""
        name = f"completion{loader}_batch{batch_idx:05d}.png"
        save_image(frame_grid(rows), self.file_path(trainer, name))
        self.images_written += 1

    def on_predict_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule
    ) -> None:
        super().on_predict_epoch_end(trainer, pl_module)
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self.num_sequences == 0:
            log.warning("CompletionWriter: no batches were predicted")
            return
        self.write_summary(trainer)

    def summary(self) -> dict[str, Any]:
        """Return the mean errors per frame over all sequences written so far."""
        means = {
            key: (value / self.num_sequences).tolist()
            for key, value in self.sums.items()
        }
        num_observed = self.run_num_observed
        frames = [
            {
                "frame": frame,
                "offset": frame - (num_observed - 1),
                "observed": frame < num_observed,
                **{key: values[frame] for key, values in means.items()},
            }
            for frame in range(len(means["mse"]))
        ]
        return {
            "num_observed": num_observed,
            "average": self.run_average,
            "num_sequences": self.num_sequences,
            "frames": frames,
        }

    def write_summary(self, trainer: L.Trainer) -> None:
        """Write ``completion_errors.json`` and ``completion_errors_by_offset.csv``."""
        summary = self.summary()
        json_path = self.file_path(trainer, "completion_errors.json")
        json_path.write_text(json.dumps(summary, indent=2) + "\n")

        csv_path = self.file_path(trainer, "completion_errors_by_offset.csv")
        with csv_path.open("w", newline="") as file:
            writer = csv.writer(file)
            columns = ["frame", "offset", "observed", "mse", "bce", "repeat_mse"]
            writer.writerow(columns)
            for row in summary["frames"]:
                writer.writerow([int(row["observed"]) if key == "observed" else row[key]
                                 for key in columns])

        predicted = [row for row in summary["frames"] if not row["observed"]]
        if predicted:
            mse = sum(row["mse"] for row in predicted) / len(predicted)
            repeat = sum(row["repeat_mse"] for row in predicted) / len(predicted)
            log.info(
                "Completed %d sequences from %d observed frames: mean MSE of the "
                "predicted frames %.5f, repeating the last observed frame %.5f; "
                "per-frame errors in %s",
                summary["num_sequences"], summary["num_observed"], mse, repeat,
                json_path,
            )
