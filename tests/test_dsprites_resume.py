"""dSprites sequences: exact resume, sequence numbers in batches, process split.

Runs use the procedural renderer, so they need no archive.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from tvae_lightning import TopographicVAE
from tvae_lightning.data import DSpritesSequenceDataModule
from tvae_lightning.data.sampling import (
    ResumableDistributedSampler,
    UnpaddedDistributedSampler,
)

from test_resume import build_trainer, train_losses

SEQ_LEN = 5
BATCH_SIZE = 4
# 18 training sequences in batches of 4 give 5 steps per epoch, the last one
# with 2 sequences, so a resumed epoch that restarted from its first batch
# would change the batch sizes of later steps.
NUM_TRAIN = 18
# An odd count, so two processes get different numbers of sequences.
NUM_VAL = 7
TOTAL_STEPS = 8


def make_module(root: Path | str = "unused", **kwargs) -> DSpritesSequenceDataModule:
    settings = {
        "root": str(root),
        "source": "procedural",
        "seq_len": SEQ_LEN,
        "batch_size": BATCH_SIZE,
        "num_train": NUM_TRAIN,
        "num_val": NUM_VAL,
        "num_test": 4,
        "seed": 0,
    }
    settings.update(kwargs)
    return DSpritesSequenceDataModule(**settings)


def simulated_rank(
    module: DSpritesSequenceDataModule, rank: int, world_size: int, training: bool
) -> DSpritesSequenceDataModule:
    """Give ``module`` the parts of a trainer it reads, then set it up for fitting."""
    module.trainer = SimpleNamespace(
        global_rank=rank, world_size=world_size, training=training
    )
    module.setup("fit")
    return module


def transfer_all(module: DSpritesSequenceDataModule, loader) -> list[dict]:
    return [module.on_after_batch_transfer(batch, 0) for batch in loader]


def fit(
    run_dir: Path, max_steps: int, save_every: int, ckpt_path: str | None = None
) -> TopographicVAE:
    L.seed_everything(0)
    model = TopographicVAE(
        n_caps=3,
        cap_dim=5,
        seq_len=SEQ_LEN,
        time_window=3,
        capsule_window=3,
        image_shape=(1, 64, 64),
        lr=1e-3,
    )
    trainer = build_trainer(run_dir, max_steps, save_every)
    trainer.fit(model, make_module(run_dir), ckpt_path=ckpt_path)
    return model


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TopographicVAE, dict[int, float], Path]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    model = fit(run_dir, TOTAL_STEPS, save_every=TOTAL_STEPS)
    return model, train_losses(run_dir), run_dir


# Step 3 stops in the middle of the first epoch, step 5 at its end.
@pytest.fixture(scope="module", params=[3, 5], ids=["mid_epoch", "epoch_end"])
def resumed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TopographicVAE, dict[int, float]]:
    stop_step = request.param
    run_dir = tmp_path_factory.mktemp(f"resumed_{stop_step}")
    fit(run_dir, stop_step, save_every=stop_step)
    model = fit(run_dir, TOTAL_STEPS, TOTAL_STEPS, ckpt_path="last")
    return model, train_losses(run_dir)


# -- exact resume ------------------------------------------------------------


def test_dsprites_resume_reaches_same_parameters(uninterrupted, resumed):
    expected, _, _ = uninterrupted
    actual, _ = resumed
    for (name, value), other in zip(
        expected.named_parameters(), actual.parameters(), strict=True
    ):
        assert torch.equal(value, other), name


def test_dsprites_resume_logs_same_final_loss(uninterrupted, resumed):
    _, expected, _ = uninterrupted
    _, actual = resumed
    last_step = TOTAL_STEPS - 1
    assert actual[last_step] == expected[last_step]


def test_checkpoint_saves_generator_per_process(uninterrupted):
    _, _, run_dir = uninterrupted
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    states = checkpoint["DSpritesSequenceDataModule"]["train_generators"]
    assert len(states) == 1


def test_checkpoint_saves_training_position(uninterrupted):
    _, _, run_dir = uninterrupted
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    loop = checkpoint["loops"]["fit_loop"]["state_dict"]
    position = loop["combined_loader"][0]
    # Step 8 is the third batch of the second epoch: 12 sequences used.
    assert (position["epoch"], position["position"]) == (1, 12)


# -- sequence numbers in batches ---------------------------------------------


def test_training_batch_carries_sampler_indices():
    module = make_module()
    module.setup("fit")
    loader = module.train_dataloader()
    batch = module.on_after_batch_transfer(next(iter(loader)), 0)
    expected = torch.tensor(list(module.train_sampler)[:BATCH_SIZE])
    assert torch.equal(batch["indices"], expected)


def test_validation_batch_carries_sequence_numbers():
    module = make_module()
    module.setup("fit")
    batch = module.on_after_batch_transfer(next(iter(module.val_dataloader())), 0)
    assert torch.equal(batch["indices"], torch.arange(BATCH_SIZE))


def test_training_indices_cover_epoch_once():
    module = make_module()
    module.setup("fit")
    batches = transfer_all(module, module.train_dataloader())
    indices = torch.cat([batch["indices"] for batch in batches])
    assert sorted(indices.tolist()) == list(range(NUM_TRAIN))


# -- loaders and the training position ----------------------------------------


def test_train_loader_uses_resumable_sampler():
    module = make_module()
    module.setup("fit")
    assert isinstance(module.train_dataloader().sampler, ResumableDistributedSampler)


def test_eval_loader_uses_unpadded_sampler():
    module = make_module()
    module.setup("fit")
    assert isinstance(module.val_dataloader().sampler, UnpaddedDistributedSampler)


def test_training_batch_advances_sampler():
    module = simulated_rank(make_module(), rank=0, world_size=1, training=True)
    loader = module.train_dataloader()
    module.on_after_batch_transfer(next(iter(loader)), 0)
    assert module.train_sampler.position == BATCH_SIZE


def test_evaluation_batch_keeps_sampler_position():
    module = simulated_rank(make_module(), rank=0, world_size=1, training=False)
    module.train_dataloader()
    module.on_after_batch_transfer(next(iter(module.val_dataloader())), 0)
    assert module.train_sampler.position == 0


def test_training_order_changes_with_epoch():
    module = make_module()
    module.setup("fit")
    loader = module.train_dataloader()
    first = list(loader.sampler)
    loader.sampler.set_epoch(1)
    assert list(loader.sampler) != first


# -- two simulated processes ----------------------------------------------------


def test_validation_ranks_cover_each_sequence_once():
    indices = []
    for rank in (0, 1):
        module = simulated_rank(make_module(), rank, world_size=2, training=False)
        batches = transfer_all(module, module.val_dataloader())
        indices += [index for batch in batches for index in batch["indices"].tolist()]
    assert sorted(indices) == list(range(NUM_VAL))


def test_validation_ranks_get_unequal_shares():
    counts = []
    for rank in (0, 1):
        module = simulated_rank(make_module(), rank, world_size=2, training=False)
        counts.append(len(module.val_dataloader().sampler))
    assert counts == [4, 3]


def test_validation_ranks_match_single_process():
    single = make_module()
    single.setup("fit")
    expected = torch.cat(
        [batch["classes"] for batch in transfer_all(single, single.val_dataloader())]
    )

    for rank in (0, 1):
        module = simulated_rank(make_module(), rank, world_size=2, training=False)
        for batch in transfer_all(module, module.val_dataloader()):
            assert torch.equal(batch["classes"], expected[batch["indices"]])


def test_training_ranks_split_epoch():
    shards = []
    for rank in (0, 1):
        module = simulated_rank(make_module(), rank, world_size=2, training=False)
        shards.append(set(module.train_dataloader().sampler))
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == set(range(NUM_TRAIN))


# -- generator states ----------------------------------------------------------


def test_state_dict_from_single_state_restores_generator():
    saved = make_module()
    saved.setup("fit")
    old_format = {"train_generator": saved.train_generator.get_state()}
    expected = saved.sample(BATCH_SIZE, saved.train_generator)[0]

    restored = make_module(seed=9)
    restored.setup("fit")
    restored.load_state_dict(old_format)
    result = restored.sample(BATCH_SIZE, restored.train_generator)[0]
    assert torch.equal(result, expected)


def test_state_dict_of_other_world_size_warns(caplog):
    module = make_module()
    module.setup("fit")
    state = module.train_generator.get_state()
    with caplog.at_level(logging.WARNING, logger="tvae_lightning.data"):
        module.load_state_dict({"train_generators": [state, state]})
    assert "2 processes" in caplog.text
