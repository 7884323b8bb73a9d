"""Crash-safe checkpoint files and the state a checkpoint needs for exact resume.

:class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the
target folder, flushes it to disk and renames it over the target, so a process
killed while saving leaves the previous file intact. ``tvae-cli`` installs it by
default through :func:`use_atomic_checkpoint_io`.

:func:`random_states` and :func:`restore_random_states` carry the global random
generators across a resume, and :func:`check_checkpoint_fits` turns a checkpoint
of another model class or size into a readable error.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from torch import nn

log = logging.getLogger(__name__)

MODEL_CLASS_KEY = "tvae_model_class"
"""Checkpoint entry with the qualified class name of the model that saved it."""

RANDOM_STATES_KEY = "tvae_random_states"
"""Checkpoint entry with the global random generator states of process 0."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that replaces a local checkpoint file in one step.

    The checkpoint goes to ``.<name>.<pid>.tmp`` in the target folder, is
    flushed with ``fsync`` and then renamed over ``<name>`` with ``os.replace``,
    which POSIX requires to be atomic. A reader therefore sees the old file or
    the new one, never a partial one. A process killed while saving leaves at
    most the temporary file behind, and its ``.tmp`` suffix keeps Lightning's
    search for ``last*.ckpt`` from picking it up. Paths with a remote protocol
    (``s3://`` and the like) go through the parent class.
    """

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: str | os.PathLike,
        storage_options: Any | None = None,
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint does not take "
                f"storage_options, got {storage_options!r}"
            )
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path)
            return

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    # Flushing the folder makes the rename itself durable. Some systems (Windows)
    # cannot open a folder for that, which costs durability but not atomicity.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def use_atomic_checkpoint_io(trainer: L.Trainer) -> None:
    """Give ``trainer`` an :class:`AtomicCheckpointIO` unless it has its own.

    Only the plain ``TorchCheckpointIO`` that Lightning creates by default is
    replaced; a checkpoint plugin passed to the trainer is kept.
    """
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


def random_states() -> dict[str, Any]:
    """Return the states of the global generators of torch, CUDA, NumPy and Python.

    The states are tensors, strings, numbers and tuples only, so the checkpoint
    still loads with ``torch.load(..., weights_only=True)``.
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (
            kind,
            torch.from_numpy(keys.copy()),
            position,
            has_gauss,
            cached_gaussian,
        ),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the global generators to ``states`` from :func:`random_states`.

    CUDA states are restored only when the number of visible devices matches.
    """
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])

    cuda_states = states.get("cuda")
    if cuda_states is not None and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning(
                "Checkpoint has CUDA random states for %d devices but %d are "
                "visible; CUDA generators keep their current state.",
                len(cuda_states),
                torch.cuda.device_count(),
            )


def qualified_name(cls: type) -> str:
    """Return ``module.QualifiedName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def class_mismatch_error(cls: type, saved_class: str | None) -> ValueError | None:
    """Return the error for loading a checkpoint of ``saved_class`` into ``cls``.

    Returns ``None`` when ``saved_class`` is unknown (``None``) or is ``cls`` or
    one of its base classes.
    """
    ancestors = {qualified_name(base) for base in cls.__mro__}
    if saved_class is None or saved_class in ancestors:
        return None
    short = saved_class.rsplit(".", 1)[-1]
    return ValueError(
        f"checkpoint was saved by {saved_class}, which cannot be loaded into "
        f"{qualified_name(cls)}; load it with {short}.load_from_checkpoint or "
        f"pass --model.class_path {saved_class}"
    )


def saved_model_class(checkpoint_path: str | os.PathLike) -> str | None:
    """Return the model class recorded in a checkpoint file, or ``None``."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    return checkpoint.get(MODEL_CLASS_KEY)


def check_checkpoint_fits(model: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Raise ``ValueError`` when ``checkpoint`` cannot load into ``model``.

    Checks, in this order: that the checkpoint was saved by the model's class or
    one of its base classes (when the checkpoint records a class), that the
    parameter names match, and that every parameter has the same shape. The
    message names the saving class, the differing keys or shapes and the
    hyperparameters that differ.
    """
    own_class = qualified_name(type(model))
    error = class_mismatch_error(type(model), checkpoint.get(MODEL_CLASS_KEY))
    if error is not None:
        raise error

    saved = checkpoint.get("state_dict", {})
    own = model.state_dict()
    problems = _key_problems(own, saved) or _shape_problems(own, saved)
    if not problems:
        return

    differing = _differing_hparams(model, checkpoint.get("hyper_parameters", {}))
    hint = (
        f" Hyperparameters that differ (checkpoint vs. model): {differing}."
        if differing
        else ""
    )
    raise ValueError(
        f"checkpoint does not fit {own_class}: {problems}.{hint} Build the model "
        f"with the checkpoint's hyperparameters, e.g. by loading it with "
        f"{type(model).__name__}.load_from_checkpoint and no overrides."
    )


def _key_problems(own: dict[str, Any], saved: dict[str, Any]) -> str:
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    parts = []
    if missing:
        parts.append(f"missing parameters {_shorten(missing)}")
    if unexpected:
        parts.append(f"unexpected parameters {_shorten(unexpected)}")
    return "; ".join(parts)


def _shape_problems(own: dict[str, Any], saved: dict[str, Any]) -> str:
    mismatches = [
        f"{name} {tuple(saved[name].shape)} in the checkpoint, "
        f"{tuple(value.shape)} in the model"
        for name, value in own.items()
        if hasattr(value, "shape")
        and hasattr(saved[name], "shape")
        and tuple(saved[name].shape) != tuple(value.shape)
    ]
    return f"shape mismatch for {_shorten(mismatches)}" if mismatches else ""


def _differing_hparams(model: nn.Module, saved: dict[str, Any]) -> str:
    own = getattr(model, "hparams", {})
    names = sorted(
        name
        for name in set(own) & set(saved)
        if isinstance(own[name], (int, float, str, bool, tuple, list))
        and _plain(own[name]) != _plain(saved[name])
    )
    return ", ".join(f"{name}={saved[name]!r} vs. {own[name]!r}" for name in names)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _shorten(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
