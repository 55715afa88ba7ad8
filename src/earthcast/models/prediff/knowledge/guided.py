"""``make_guidance``: wire an alignment network and a constraint into a sampler's ``mean_shift``.

Axis legend: ``b`` batch, ``s`` ensemble member, ``t`` time, ``h``/``w`` latent space, ``c`` latent
channel, ``k`` constrained statistics.

The guidance rule itself (μ' = μ − λ·s_t·∇_{z_t}‖U_φ(z_t, t) − F₀‖, per-sample norm, λ = 0 is a
no-op) lives in :class:`~earthcast.models.prediff.diffusion.guidance.KnowledgeGuidance`. This
module only supplies its two inputs:

* ``alignment_fn(z_t, t) = mean over frames of U_φ(z_t, t)``, ``(b, k)``: the alignment network
  predicts one value per future frame and is trained against the clip-level statistic through the
  same frame mean (``training/alignment_module.py``), as the reference SEVIR constraint does;
* ``target = constraint.target(context, **options)``, ``(b, k)``: F₀ from the context alone.

For an ensemble sampled as one batch of ``b·s`` latents (member index fastest, ``(b s)``), pass
``num_samples = s`` and each context's F₀ is repeated for its members.

``make_decoded_guidance`` is the same rule with another ``alignment_fn``, needing no U_φ: the
statistic of the *decoded predicted clean latent*, F(D(ẑ₀)) with ẑ₀ = (z_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t.
ε̂ is taken as a constant (no gradient through the denoiser), so ∇_{z_t} runs through ẑ₀'s
linear dependence on z_t and the VAE decoder. Each step then costs one more denoiser call and a
decoder forward and backward (1.6× the time of U_φ guidance in ``benchmarks/knowledge_control.py``),
and it steers the statistic of the frames themselves, which U_φ can be fooled about.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import repeat
from torch import Tensor, nn

from earthcast.models.prediff.diffusion.guidance import KnowledgeGuidance, NormMode, StepScale
from earthcast.models.prediff.knowledge.constraints import Constraint

GUIDE_BY = ("alignment", "decoded")
"""What guidance differentiates: U_φ's reading of z_t, or the statistic of the decoded ẑ₀."""


def frame_mean_alignment(alignment_net: nn.Module):
    """``(z_t (b, T_out, h, w, c), t (b,)) -> (b, k)``: U_φ's per-frame readouts averaged over frames."""

    def alignment_fn(z_t: Tensor, t: Tensor) -> Tensor:
        return alignment_net(z_t, t).mean(dim=1)  # (b, T_out, k) -> (b, k)

    return alignment_fn


def member_targets(constraint: Constraint, context: Tensor, num_samples: int, **options: Any) -> Tensor:
    """F₀ of each context ``(B, T_in, H, W, C)``, repeated for its members: ``(B·S, k)``, ``(B s)``."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    with torch.no_grad():
        target = constraint.target(context, **options)  # (B, k)
    return repeat(target, "b k -> (b s) k", s=num_samples)


def make_guidance(
    alignment_net: nn.Module,
    constraint: Constraint,
    context: Tensor,
    scale: float,
    step_scale: StepScale = "std",
    norm: NormMode = "per_sample",
    num_samples: int = 1,
    **target_options: Any,
) -> KnowledgeGuidance:
    """Knowledge guidance towards ``constraint.target(context, **target_options)``.

    Args:
        alignment_net: U_φ, ``(z_t (b, T_out, h, w, c), t (b,)) -> (b, T_out, k)``; used as is
            (put it in eval mode; its parameters receive no gradient).
        constraint: the constraint whose F₀ is requested.
        context: ``(B, T_in, H, W, C)`` context frames on the data's normalised scale.
        scale: λ ≥ 0; 0 makes guided sampling bit-identical to unguided sampling.
        step_scale: ``"std"`` (reference code) | ``"variance"`` (paper); see ``KnowledgeGuidance``.
        norm: ``"per_sample"`` (default) | ``"batch"`` (reference quirk).
        num_samples: ensemble members per context in the sampled batch (``(B s)`` order).
        **target_options: passed to ``constraint.target``, e.g. ``anticipate="+2sigma"``.

    Returns:
        A ``mean_shift`` for ``sample_latents`` / the samplers' ``step``.
    """
    target = member_targets(constraint, context, num_samples, **target_options)  # (B·S, k)
    return KnowledgeGuidance(frame_mean_alignment(alignment_net), target, scale, step_scale, norm)


def decoded_statistic(prediff: nn.Module, constraint: Constraint, context: Tensor):
    """``(z_t (b, T_out, h, w, c), t (b,)) -> (b, k)``: F of the frames decoded from ẑ₀(z_t).

    ``context`` is ``(b, T_in, H, W, C)``, one row per sampled latent (members repeated), and
    conditions the denoiser exactly as in the sampler.
    """
    with torch.no_grad():
        z_cond = prediff.encode_context(context)  # (b, T_in, h, w, c)

    def alignment_fn(z_t: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():  # ε̂ is held constant: no gradient through the denoiser
            eps = prediff.predict_noise(z_t.detach(), t, z_cond)  # (b, T_out, h, w, c)
        z0 = prediff.schedule.predict_z0(z_t, eps, t)  # (b, T_out, h, w, c), linear in z_t
        return constraint.statistic(prediff.decode(z0), context)  # (b, k)

    return alignment_fn


def make_decoded_guidance(
    prediff: nn.Module,
    constraint: Constraint,
    context: Tensor,
    scale: float,
    step_scale: StepScale = "std",
    norm: NormMode = "per_sample",
    num_samples: int = 1,
    **target_options: Any,
) -> KnowledgeGuidance:
    """Knowledge guidance on F(D(ẑ₀)) instead of U_φ (module docstring); arguments as
    :func:`make_guidance`, except ``prediff`` (the model whose denoiser, schedule and VAE are
    used) and ``context``, which here is the sampled batch's own ``(B·S, T_in, H, W, C)``
    (members fastest), as a ``PreDiff`` guidance factory receives it.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    per_context = context[::num_samples]  # (B, T_in, H, W, C): members are fastest
    target = member_targets(constraint, per_context, num_samples, **target_options)  # (B·S, k)
    alignment_fn = decoded_statistic(prediff, constraint, context)
    return KnowledgeGuidance(alignment_fn, target, scale, step_scale, norm)
