"""A TopographicVAE with small convolutional encoders and decoder.

Train it with the command line by putting this folder on ``PYTHONPATH``:

    PYTHONPATH=examples tvae-cli fit --config configs/rot.yaml \
        --model conv_tvae.ConvTopographicVAE --data.root DIR

``--model`` replaces the config's model class. Init arguments that the config
and this class share, such as ``time_window``, carry over unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from tvae_lightning import TopographicVAE
from tvae_lightning.networks import GaussianEncoder


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    channels, height, width = image_shape
    if height % 4 or width % 4:
        raise ValueError(
            f"image_shape must have height and width divisible by 4 for two "
            f"stride-2 convolutions, got {tuple(image_shape)}"
        )
    return channels, height, width


class ConvEncoder(GaussianEncoder):
    """Two stride-2 convolutions and a linear layer to a diagonal Gaussian.

    Maps frames ``(frames, C, H, W)`` to a mean and a log-variance of shape
    ``(frames, latent_dim)`` each. H and W must be divisible by 4.

    Args:
        image_shape: ``(channels, height, width)`` of one frame.
        latent_dim: units per frame, ``n_caps * cap_dim``.
        width: channels of the first convolution; the second has twice as many.
    """

    def __init__(
        self, image_shape: Sequence[int], latent_dim: int, width: int = 32
    ) -> None:
        super().__init__(latent_dim)
        channels, height, width_px = _check_image_shape(image_shape)
        features = 2 * width * (height // 4) * (width_px // 4)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(features, 2 * latent_dim),
        )

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """A linear layer and two stride-2 transposed convolutions to Bernoulli logits.

    Maps latents ``(frames, latent_dim)`` to logits ``(frames, C, H, W)``.

    Args:
        image_shape: ``(channels, height, width)`` of one frame.
        latent_dim: units per frame, ``n_caps * cap_dim``.
        width: channels of the last hidden layer; the first has twice as many.
    """

    def __init__(
        self, image_shape: Sequence[int], latent_dim: int, width: int = 32
    ) -> None:
        super().__init__()
        channels, height, width_px = _check_image_shape(image_shape)
        grid = (2 * width, height // 4, width_px // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, grid[0] * grid[1] * grid[2]),
            nn.ReLU(),
            nn.Unflatten(-1, grid),
            nn.ConvTranspose2d(2 * width, width, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, kernel_size=4, stride=2, padding=1),
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.net(t)


class ConvTopographicVAE(TopographicVAE):
    """The TVAE of the package with :class:`ConvEncoder` and :class:`ConvDecoder`.

    Takes the arguments of :class:`tvae_lightning.TopographicVAE` except the
    networks, plus ``width``, the channel count of the convolutions.
    """

    def __init__(
        self,
        n_caps: int = 18,
        cap_dim: int = 18,
        seq_len: int = 18,
        time_window: int = 13,
        capsule_window: int = 3,
        mu_init: float = 30.0,
        image_shape: Sequence[int] = (3, 28, 28),
        topography: nn.Module | None = None,
        lr: float = 1e-4,
        momentum: float = 0.9,
        eval_num_samples: int = 10,
        width: int = 32,
    ) -> None:
        latent_dim = n_caps * cap_dim
        super().__init__(
            n_caps=n_caps,
            cap_dim=cap_dim,
            seq_len=seq_len,
            time_window=time_window,
            capsule_window=capsule_window,
            mu_init=mu_init,
            image_shape=image_shape,
            z_encoder=ConvEncoder(image_shape, latent_dim, width),
            u_encoder=ConvEncoder(image_shape, latent_dim, width),
            decoder=ConvDecoder(image_shape, latent_dim, width),
            topography=topography,
            lr=lr,
            momentum=momentum,
            eval_num_samples=eval_num_samples,
        )
        # The networks are rebuilt from these arguments, so only the arguments of
        # this class go into the checkpoint's hyper-parameters.
        self.save_hyperparameters(ignore=["z_encoder", "u_encoder", "decoder"])
