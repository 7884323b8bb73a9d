"""Bad input stops before training with an error that names the value and the fix."""

from __future__ import annotations

import struct
from pathlib import Path

import lightning as L
import pytest
import torch

from tvae_lightning import BubbleVAE, ShiftingCapsuleTopography, TopographicVAE
from tvae_lightning.cli import main
from tvae_lightning.data import DSpritesSequenceDataModule, TransformingMNISTDataModule
from tvae_lightning.models import VAE
from tvae_lightning.networks import MLPDecoder, MLPEncoder

from conftest import write_digit_folder

SMALL = {"n_caps": 2, "cap_dim": 4, "seq_len": 4}
RAW = Path("MNIST") / "raw"


def small_tvae(**kwargs) -> TopographicVAE:
    arguments = {**SMALL, "time_window": 3, "capsule_window": 3, **kwargs}
    return TopographicVAE(**arguments)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def mnist_module(root: Path, **kwargs) -> TransformingMNISTDataModule:
    arguments = {"seq_len": 4, "batch_size": 4, "download": False, **kwargs}
    return TransformingMNISTDataModule(root=str(root), **arguments)


def is_writable(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


@pytest.fixture
def read_only_root(tmp_path: Path):
    """A data root that cannot be written, even by root where sysfs allows it."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if is_writable(folder):
            # root ignores permission bits, but sysfs rejects new entries.
            folder = Path("/sys") / "tvae-lightning-test"
            if not Path("/sys").is_dir() or is_writable(Path("/sys")):
                pytest.skip("no folder that this user cannot write to")
        yield folder
    finally:
        (tmp_path / "read_only").chmod(0o755)


# -- names ---------------------------------------------------------------------


def test_unknown_transformation_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown transformation 'spin'; valid names .*'rotation'"
    ):
        TransformingMNISTDataModule(transformation="spin")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown dataset 'cifar10'; valid names .*'mnist'"
    ):
        TransformingMNISTDataModule(dataset="cifar10")


def test_unknown_nonfinite_mode_lists_valid_modes():
    with pytest.raises(
        ValueError,
        match=r"nonfinite_loss must be one of \('raise', 'skip'\), got 'ignore'",
    ):
        small_tvae(nonfinite_loss="ignore")


# -- shapes that do not fit ------------------------------------------------------


def test_data_seq_len_differs_from_model(mnist_root: Path):
    trainer = quiet_trainer(max_steps=1)
    with pytest.raises(
        ValueError, match="sequences of 6 frames but the model's seq_len is 4"
    ):
        trainer.fit(small_tvae(), mnist_module(mnist_root, seq_len=6))
    assert trainer.global_step == 0


def test_data_image_shape_differs_from_model(mnist_root: Path):
    model = small_tvae(image_shape=(1, 28, 28))
    trainer = quiet_trainer(max_steps=1)
    message = (
        r"frames of shape \(3, 28, 28\) but the model's image_shape is "
        r"\(1, 28, 28\)"
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit(model, mnist_module(mnist_root))
    assert trainer.global_step == 0


def test_encoder_image_shape_differs_from_model():
    encoder = MLPEncoder((1, 28, 28), 8)
    message = r"z_encoder cannot take an input of shape \(1, 3, 28, 28\)"
    with pytest.raises(ValueError, match=message):
        small_tvae(z_encoder=encoder)


def test_decoder_image_shape_differs_from_model():
    with pytest.raises(
        ValueError,
        match=r"decoder must map latents of shape \(1, 8\) to \(1, 3, 28, 28\)",
    ):
        small_tvae(decoder=MLPDecoder((1, 28, 28), 8))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"seq_len": 4, "cap_dim": 8, "time_window": 5},
            "time_window must be between 1 and seq_len = 4, got 5",
        ),
        (
            {"seq_len": 8, "cap_dim": 4, "time_window": 5},
            "time_window must be between 1 and cap_dim = 4, got 5",
        ),
        (
            {"capsule_window": 5},
            "capsule_window must be an odd integer between 1 and cap_dim = 4, got 5",
        ),
        (
            {"capsule_window": 2},
            "capsule_window must be an odd integer between 1 and cap_dim = 4, got 2",
        ),
    ],
    ids=[
        "time_window_over_seq_len",
        "time_window_over_cap_dim",
        "capsule_window_over_cap_dim",
        "even_capsule_window",
    ],
)
def test_window_too_large(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        small_tvae(**kwargs)


def test_bubble_window_over_seq_len():
    with pytest.raises(
        ValueError, match="time_window must be between 1 and seq_len = 4, got 6"
    ):
        BubbleVAE(**SMALL, time_window=6, capsule_window=3)


def test_encoder_latent_size_mismatch():
    with pytest.raises(
        ValueError,
        match=r"n_caps \* cap_dim = 2 \* 4 must equal the encoder's latent size",
    ):
        small_tvae(u_encoder=MLPEncoder((3, 28, 28), 12))


def test_topography_latent_size_differs_from_model():
    topography = ShiftingCapsuleTopography(3, 4, 4, 3, 3)
    with pytest.raises(
        ValueError, match="topography has latent_dim = 12 but the model needs 8"
    ):
        small_tvae(topography=topography)


# -- data files ------------------------------------------------------------------


def test_truncated_idx_names_file_and_sizes(mnist_root: Path):
    path = mnist_root / RAW / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    datamodule = mnist_module(mnist_root)
    message = (
        r"invalid or truncated IDX file in .*: train-images-idx3-ubyte has 1000 "
        r"bytes, expected 50192 \(a 16-byte header and 64 x 28 x 28 uint8 values\)"
    )
    with pytest.raises(ValueError, match=message):
        datamodule.setup("fit")


def test_corrupt_idx_magic_named(mnist_root: Path):
    path = mnist_root / RAW / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[:4] = struct.pack(">I", 2055)
    path.write_bytes(bytes(data))
    datamodule = mnist_module(mnist_root)
    with pytest.raises(
        ValueError, match="t10k-labels-idx1-ubyte has magic number 2055, expected 2049"
    ):
        datamodule.setup("test")


def test_corrupt_idx_error_names_replacement(mnist_root: Path):
    path = mnist_root / RAW / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x00")
    datamodule = mnist_module(mnist_root)
    with pytest.raises(
        ValueError,
        match="Replace the files with intact copies of train-images-idx3-ubyte",
    ):
        datamodule.setup("fit")


def test_corrupt_dsprites_archive(tmp_path: Path):
    archive = tmp_path / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    archive.write_bytes(b"PK\x03\x04 not a zip archive")
    datamodule = DSpritesSequenceDataModule(root=str(tmp_path), source="archive")
    with pytest.raises(
        ValueError, match=r"invalid or truncated dSprites archive .*BadZipFile"
    ):
        datamodule.setup("fit")


def test_missing_folder_without_download(tmp_path: Path):
    datamodule = mnist_module(tmp_path / "absent")
    message = (
        r"mnist files not found in '.*absent/MNIST/raw' and download=False was given"
    )
    with pytest.raises(FileNotFoundError, match=message):
        datamodule.setup("fit")


def test_missing_folder_error_names_option(tmp_path: Path):
    datamodule = mnist_module(tmp_path / "absent")
    with pytest.raises(
        FileNotFoundError,
        match="pass --data.root with the folder that contains MNIST/raw",
    ):
        datamodule.setup("fit")


def test_read_only_empty_folder_without_download(read_only_root: Path):
    datamodule = mnist_module(read_only_root)
    with pytest.raises(FileNotFoundError, match="download=False was given"):
        datamodule.setup("fit")


def test_read_only_root_download_fails_clearly(read_only_root: Path):
    datamodule = mnist_module(read_only_root, download=True)
    message = (
        r"mnist files not found in .* and the download failed "
        r"\((PermissionError|OSError)"
    )
    with pytest.raises(FileNotFoundError, match=message):
        datamodule.prepare_data()


def test_read_only_folder_with_files_loads(mnist_root: Path):
    raw = mnist_root / RAW
    for path in raw.iterdir():
        path.chmod(0o444)
    raw.chmod(0o555)
    try:
        datamodule = mnist_module(mnist_root, download=True)
        datamodule.prepare_data()
        datamodule.setup("fit")
    finally:
        raw.chmod(0o755)
    assert len(datamodule.train_source) == 51


# -- checkpoints -----------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-step checkpoints of the VAE, the BubbleVAE and the TVAE."""
    root = write_digit_folder(tmp_path_factory.mktemp("data"))
    folder = tmp_path_factory.mktemp("checkpoints")
    models = {
        "vae": VAE(**SMALL),
        "bubble": BubbleVAE(**SMALL, time_window=3, capsule_window=3),
        "tvae": small_tvae(),
    }
    paths = {}
    for name, model in models.items():
        trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
        trainer.fit(model, mnist_module(root))
        paths[name] = folder / f"{name}.ckpt"
        trainer.save_checkpoint(paths[name])
    return paths


def test_vae_checkpoint_into_tvae(checkpoints: dict[str, Path]):
    message = (
        r"checkpoint was saved by tvae_lightning.models.vae.VAE, which cannot be "
        r"loaded into tvae_lightning.models.tvae.TopographicVAE; load it with "
        r"VAE.load_from_checkpoint"
    )
    with pytest.raises(ValueError, match=message):
        TopographicVAE.load_from_checkpoint(checkpoints["vae"])


def test_bubble_checkpoint_into_tvae(checkpoints: dict[str, Path]):
    # Both models have the same parameter names and shapes; only the class differs.
    with pytest.raises(
        ValueError, match="saved by tvae_lightning.models.bubble.BubbleVAE"
    ):
        TopographicVAE.load_from_checkpoint(checkpoints["bubble"])


def test_tvae_checkpoint_with_other_size(checkpoints: dict[str, Path]):
    message = (
        r"checkpoint does not fit .*TopographicVAE: shape mismatch for "
        r"z_encoder.net.1.weight \(24, 2352\) in the checkpoint, \(36, 2352\) in "
        r"the model"
    )
    with pytest.raises(ValueError, match=message):
        TopographicVAE.load_from_checkpoint(checkpoints["tvae"], n_caps=3)


def test_tvae_checkpoint_into_vae_names_missing(checkpoints: dict[str, Path]):
    with pytest.raises(
        ValueError, match="saved by tvae_lightning.models.tvae.TopographicVAE"
    ):
        VAE.load_from_checkpoint(checkpoints["tvae"])


def test_trainer_checkpoint_of_other_size(
    checkpoints: dict[str, Path], mnist_root: Path
):
    trainer = quiet_trainer()
    model = small_tvae(cap_dim=3, capsule_window=3)
    message = r"Hyperparameters that differ \(checkpoint vs. model\): cap_dim=4 vs. 3"
    with pytest.raises(ValueError, match=message):
        trainer.validate(model, mnist_module(mnist_root), ckpt_path=checkpoints["tvae"])


def test_matching_checkpoint_loads(checkpoints: dict[str, Path]):
    model = TopographicVAE.load_from_checkpoint(checkpoints["tvae"])
    state = torch.load(checkpoints["tvae"], weights_only=True)["state_dict"]
    assert torch.equal(model.topography.mu, state["topography.mu"])


# -- YAML config -------------------------------------------------------------------


def test_yaml_misspelled_model_key(tmp_path: Path, capsys: pytest.CaptureFixture):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "model:\n"
        "  class_path: tvae_lightning.TopographicVAE\n"
        "  init_args:\n"
        "    time_windw: 3\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code != 0
    assert "Option 'time_windw' is not accepted" in capsys.readouterr().err


def test_yaml_misspelled_trainer_key(tmp_path: Path, capsys: pytest.CaptureFixture):
    config = tmp_path / "bad.yaml"
    config.write_text("trainer:\n  max_stepz: 3\n")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(config),
                "--model.class_path",
                "tvae_lightning.TopographicVAE",
            ]
        )
    assert exit_info.value.code != 0
    assert "does not accept option 'trainer.max_stepz'" in capsys.readouterr().err
