"""``KnowledgeGuidance``: the knowledge-control rule of PreDiff as a pluggable ``mean_shift``.

PreDiff (Gao et al. 2023, §3.2; SPEC §5.6) tilts each reverse transition by exp(−λ ‖U_φ(z_t, t) − F₀‖),
which to first order shifts the transition mean:

    L_i = ‖ U_φ(z_t, t)_i − F₀,i ‖₂               violation of sample i (norm over its K statistics)
    g_i = ∇_{z_t,i} L_i                            autograd w.r.t. the current noisy latent only
    μ'_i = μ_i − λ · s_t · g_i

Two choices, both documented here:

* ``step_scale``: ``"std"`` uses s_t = σ_t = √β̃_t (posterior std), which is what the reference code
  does (``LatentDiffusion.p_sample``) and is the **default** so that the shipped ``guide_scale``
  λ = 50 keeps its meaning; ``"variance"`` uses s_t = σ_t² = β̃_t, the paper's / classifier
  guidance's Σ_θ ∇ log p form (Dhariwal & Nichol 2021, Algorithm 1). Variance scaling is weaker
  by a factor σ_t, so it needs a larger λ.
* ``norm``: ``"per_sample"`` (default) takes one norm per sample, so a sample's shift does not
  depend on the rest of the batch. ``"batch"`` reproduces the reference's bug of one norm over the
  whole batch (every gradient is divided by a batch-global norm, so the guidance strength depends
  on batch size and on the other samples) and exists only to compare with reference numbers.

λ = 0 returns ``None``, which samplers treat as "no shift": guided sampling is then bit-identical
to unguided sampling.

Axis legend: ``b`` batch; ``k`` constrained statistics; ``...`` the latent's remaining axes
(``t h w c`` for PreDiff). ``t`` is the diffusion step, a LongTensor ``(b,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor

AlignmentFn = Callable[[Tensor, Tensor], Tensor]
StepScale = Literal["std", "variance"]
NormMode = Literal["per_sample", "batch"]


class KnowledgeGuidance:
    """Mean shift −λ · s_t · ∇_{z_t} ‖alignment_fn(z_t, t) − F₀‖ (see the module docstring).

    Args:
        alignment_fn: ``(z_t (b, ...), t (b,)) -> (b, k)``, the statistic predicted from the noisy
            latent (an alignment network U_φ, already reduced exactly as it is compared to F₀, e.g.
            averaged over frames as in the reference SEVIR constraint). It must treat samples
            independently (no batch statistics) for the per-sample norm to mean anything.
        target: F₀, ``(b, k)`` (or anything broadcasting to the output of ``alignment_fn``).
        scale: λ ≥ 0; 0 disables the guidance.
        step_scale: ``"std"`` (default, reference code) | ``"variance"`` (paper).
        norm: ``"per_sample"`` (default) | ``"batch"`` (reference quirk, for comparison only).
    """

    def __init__(
        self,
        alignment_fn: AlignmentFn,
        target: Tensor,
        scale: float,
        step_scale: StepScale = "std",
        norm: NormMode = "per_sample",
    ) -> None:
        if step_scale not in ("std", "variance"):
            raise ValueError(f"step_scale={step_scale!r} (choose 'std' or 'variance')")
        if norm not in ("per_sample", "batch"):
            raise ValueError(f"norm={norm!r} (choose 'per_sample' or 'batch')")
        if scale < 0:
            raise ValueError(f"scale={scale} must be >= 0")
        self.alignment_fn = alignment_fn
        self.target = target
        self.scale = float(scale)
        self.step_scale = step_scale
        self.norm = norm

    def __call__(self, z_t: Tensor, t: Tensor, mean: Tensor, std: Tensor) -> Tensor | None:
        """The shift to add to the transition mean.

        Args:
            z_t: current noisy latent ``(b, ...)``.
            t: diffusion steps ``(b,)``.
            mean: the unshifted transition mean ``(b, ...)`` (unused by this rule; part of the contract).
            std: posterior std σ_t, ``(b, 1, …)`` or a scalar.

        Returns:
            −λ · s_t · g, ``(b, ...)``, detached; ``None`` when λ = 0.
        """
        if self.scale == 0.0:
            return None
        grad = self.gradient(z_t, t)  # (b, ...)
        step = std if self.step_scale == "std" else std**2  # (b, 1, …)
        return -self.scale * step * grad  # (b, ...)

    def violation(self, z_t: Tensor, t: Tensor) -> Tensor:
        """L = ‖alignment_fn(z_t, t) − F₀‖₂, ``(b,)`` per sample (a 0-d tensor for ``norm="batch"``)."""
        residual = self.alignment_fn(z_t, t) - self.target.to(z_t)  # (b, k)
        residual = rearrange(residual, "b ... -> b (...)")  # (b, k)
        if self.norm == "batch":
            return torch.linalg.vector_norm(residual)  # ()
        return torch.linalg.vector_norm(residual, dim=1)  # (b,)

    def gradient(self, z_t: Tensor, t: Tensor) -> Tensor:
        """g = ∇_{z_t} L, ``(b, ...)``; grad is enabled here even under ``torch.no_grad``.

        Summing the per-sample violations before differentiating gives each sample its own
        gradient (samples are independent); only ``z_t`` is differentiated, so no parameter
        gradients accumulate and the graph is freed on return.
        """
        with torch.enable_grad():
            z = z_t.detach().requires_grad_(True)  # (b, ...)
            loss = self.violation(z, t).sum()  # ()
            (grad,) = torch.autograd.grad(loss, z)  # (b, ...)
        return grad
