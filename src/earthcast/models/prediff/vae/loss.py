"""Training objective of the PreDiff VAE: L1 likelihood + KL + adaptive PatchGAN hinge (SPEC §5.2).

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel.

Per training batch of frames ``x`` (``(B, T, H, W, C)``; NaN marks missing pixels, which are
left out of every sum), reconstructions ``x̂`` and posteriors ``q``, with ``N = B·T`` frames:

1. Likelihood: ``nll = (1/N) Σ_valid (|x − x̂| / e^s + s)`` — summed per frame, averaged over
   frames, with a global log-variance ``s`` (fixed at ``rec_logvar_init`` unless
   ``learn_rec_logvar``; fixed at 0 this is the summed L1 of the reference).
2. ``kl = (1/N) Σ_frames KL(q ‖ N(0, I))``.
3. Adversarial, once ``step ≥ disc_start``: ``g = −mean D(x̂)`` with the adaptive weight
   ``λ = disc_weight · clamp(‖∇_last nll‖ / (‖∇_last g‖ + 1e-4), 0, max)``, ``∇_last`` the
   gradient at the decoder's output-conv weight; λ is a constant (no gradient through it).
4. Generator loss ``nll + kl_weight · kl + λ · g``; critic loss (own optimiser, same switch)
   ``½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))`` (hinge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from earthcast.models.prediff.vae.config import VAEConfig
from earthcast.models.prediff.vae.distribution import DiagonalGaussian

ADAPTIVE_EPS = 1e-4
"""Denominator guard of the adaptive weight (reference value)."""


@dataclass
class LossOutput:
    """A loss to back-propagate and its detached parts for logging."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Hinge critic loss ``½ (mean relu(1 − D(x)) + mean relu(1 + D(x̂)))``: 0 once real ≥ 1, fake ≤ −1."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(
    nll: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4, eps: float = ADAPTIVE_EPS
) -> Tensor:
    """``clamp(‖∇_last nll‖ / (‖∇_last g‖ + eps), 0, max_weight)``, detached.

    Balances the two gradients where they meet the image (the decoder's output layer) so the
    adversarial term neither drowns nor vanishes next to the likelihood as their scales drift.
    """
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (g_grad.norm() + eps)).clamp(0.0, max_weight).detach()


def masked_abs_error(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    """``|x − x̂|`` with 0 where ``x`` is not finite, and the validity mask (both ``x``'s shape)."""
    valid = torch.isfinite(x)
    return torch.where(valid, (torch.nan_to_num(x) - x_hat).abs(), 0.0), valid


class VAELoss(nn.Module):
    """Generator and critic losses of the VAE (steps 1–4 of the module docstring).

    Holds only the likelihood's log-variance ``s`` (a parameter when learned, else a buffer);
    the critic is a separate network whose logits are passed in.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        logvar = torch.tensor(float(config.rec_logvar_init))
        if config.learn_rec_logvar:
            self.rec_logvar = nn.Parameter(logvar)
        else:
            self.register_buffer("rec_logvar", logvar)

    def gan_active(self, step: int) -> bool:
        """Whether the adversarial terms are on at generator optimiser step ``step``."""
        return self.config.use_discriminator and step >= self.config.disc_start

    def reconstruction(self, x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
        """``(nll, mean L1)``: the per-frame summed likelihood term and the per-pixel L1 (for logs)."""
        error, valid = masked_abs_error(x, x_hat)  # (B, T, H, W, C) each
        frames = x[..., 0, 0, 0].numel()
        nll = (error * torch.exp(-self.rec_logvar) + self.rec_logvar * valid).sum() / frames
        return nll, error.sum() / valid.sum().clamp_min(1)

    def generator_loss(
        self,
        x: Tensor,
        x_hat: Tensor,
        posterior: DiagonalGaussian,
        logits_fake: Tensor | None = None,
        last_layer: Tensor | None = None,
    ) -> LossOutput:
        """Loss of the autoencoder; pass the critic's ``logits_fake = D(x̂)`` to add the GAN term.

        Args:
            x: target frames ``(B, T, H, W, C)`` (NaN = missing).
            x_hat: reconstructions, same shape.
            posterior: ``q(z | x)`` with parameters ``(B, T, h, w, c)``.
            logits_fake: critic logits of ``x_hat`` (``None``: adversarial term off).
            last_layer: decoder output weight for the adaptive weight (needed with ``logits_fake``).
        """
        nll, l1 = self.reconstruction(x, x_hat)
        kl = posterior.kl().mean()  # KL summed per frame, averaged over frames
        loss = nll + self.config.kl_weight * kl
        logs = {"nll": nll, "rec_loss": l1, "kl": kl}
        if logits_fake is not None:
            if last_layer is None:
                raise ValueError("the adversarial term needs the decoder's last layer for its weight")
            g_loss = -logits_fake.mean()
            weight = self.config.disc_weight * adaptive_weight(
                nll, g_loss, last_layer, self.config.disc_max_adaptive_weight
            )
            loss = loss + weight * g_loss
            logs |= {"g_loss": g_loss, "d_weight": weight}
        logs["loss"] = loss
        return LossOutput(loss, {k: v.detach() for k, v in logs.items()})

    def discriminator_loss(self, logits_real: Tensor, logits_fake: Tensor) -> LossOutput:
        """Hinge loss of the critic on ``D(x)`` and ``D(x̂)`` (``x̂`` detached by the caller)."""
        loss = hinge_d_loss(logits_real, logits_fake)
        logs = {
            "d_loss": loss.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }
        return LossOutput(loss, logs)
