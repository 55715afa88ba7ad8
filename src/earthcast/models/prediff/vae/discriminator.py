"""PatchGAN critic of the VAE's adversarial loss (pix2pix ``NLayerDiscriminator``, SPEC §5.2).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel; ``n`` frames (``b·t``).

Kernel-4 convolutions with padding 1: ``layers`` stride-2 convolutions (filters ``f, 2f, 4f, …``,
capped at ``8f``), one stride-1 convolution (next width) and a stride-1 output convolution to one
channel; BatchNorm after every convolution but the first and the last, LeakyReLU(0.2) after
every one but the last. Reference: ``layers=3, f=64`` → 64/128/256 (stride 2), 512 (stride 1).
Each output logit judges one overlapping patch of a frame; an ``H×W`` frame gives a
``(H/2^L − 2) × (W/2^L − 2)`` grid, so frames need ``H, W ≥ 3·2^L``.
"""

from __future__ import annotations

from torch import Tensor, nn

from earthcast.models.prediff.vae.blocks import from_frames, to_frames
from earthcast.models.prediff.vae.config import VAEConfig


def _conv_block(dim: int, out_dim: int, stride: int, norm: bool) -> list[nn.Module]:
    # BatchNorm supplies the shift, so the conv before it has no bias (as in pix2pix)
    conv = nn.Conv2d(dim, out_dim, 4, stride=stride, padding=1, bias=not norm)
    return [conv, *([nn.BatchNorm2d(out_dim)] if norm else []), nn.LeakyReLU(0.2)]


class NLayerDiscriminator(nn.Module):
    """PatchGAN: frames → a grid of real/fake logits.

    Args:
        in_channels: channels of a frame.
        filters: filters ``f`` of the first layer.
        layers: stride-2 convolutions ``L``.
    """

    def __init__(self, in_channels: int = 1, filters: int = 64, layers: int = 3) -> None:
        super().__init__()
        self.layers = layers
        widths = [filters * min(2**i, 8) for i in range(layers + 1)]
        net = _conv_block(in_channels, widths[0], stride=2, norm=False)
        for i in range(1, layers):
            net += _conv_block(widths[i - 1], widths[i], stride=2, norm=True)
        net += _conv_block(widths[layers - 1], widths[layers], stride=1, norm=True)
        net.append(nn.Conv2d(widths[layers], 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*net)
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: VAEConfig) -> NLayerDiscriminator:
        """The critic of a VAE config: judges ``out_channels`` frames with ``disc_*`` sizes."""
        return cls(config.out_channels, config.disc_filters, config.disc_layers)

    @property
    def min_size(self) -> int:
        """Smallest frame side that leaves at least one logit."""
        return 3 * 2**self.layers

    def reset_parameters(self) -> None:
        """pix2pix init: conv weights ``N(0, 0.02)``, BatchNorm scale ``N(1, 0.02)``, shift 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, H, W, C)`` → ``(B, T, H', W', 1)`` logits (or ``(B, H, W, C)`` → ``(B, H', W', 1)``)."""
        if min(x.shape[-3:-1]) < self.min_size:
            raise ValueError(
                f"frames of {tuple(x.shape[-3:-1])} are too small for a {self.layers}-layer PatchGAN "
                f"(need at least {self.min_size}); lower disc_layers"
            )
        frames, batch = to_frames(x)  # (N, C, H, W)
        return from_frames(self.net(frames), batch)  # (B, T, H', W', 1)
