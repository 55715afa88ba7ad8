"""Knowledge constraints ``F(x̂, y)`` and their requested values ``F₀(y)``, by name.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel, ``k`` constrained statistics.

A constraint (PreDiff §3.2, SPEC §5.7) is an ``nn.Module`` with two methods:

* ``statistic(future (B, T_out, H, W, C), context (B, T_in, H, W, C)) -> (B, K)``: F(x̂, y), the
  statistic of a (forecast or real) future; the alignment network U_φ is trained to predict it
  from noisy latents of real futures.
* ``target(context, **options) -> (B, K)``: F₀(y), what the guided sampler should aim for. It
  reads the context only, never the future being forecast.

Its learned parts (a regressor, an estimator) are submodules, so a constraint saves and loads with
its ``state_dict``; ``build_options()`` returns the keyword arguments that rebuild an untrained
copy through ``CONSTRAINTS.create(name, **options)``.

Built-ins (``get_constraint(name)``; ``list_constraints()``):

``mean_intensity``
    F = mean of the future over ``t, h, w, c`` (finite pixels) on the data's normalised scale;
    F₀ = μ_τ + n·σ_τ from a :class:`ContextIntensityRegressor` fitted on the training split
    (``target(context, anticipate="+2sigma")`` or ``n_sigma=2.0``).
``nbody_energy``
    F = total energy of the future clip estimated from its frames by an
    :class:`EnergyEstimator`; F₀ = the estimated energy of the context clip (energy is conserved).
    Both sides use the same estimator, so its systematic errors largely cancel in F − F₀.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from earthcast._registry import Registry
from earthcast.models.prediff.knowledge.energy import EnergyEstimator, EnergyEstimatorConfig
from earthcast.models.prediff.knowledge.intensity import (
    ContextIntensityRegressor,
    IntensityRegressorConfig,
    future_mean,
    parse_anticipate,
)

CONSTRAINTS: Registry[Constraint] = Registry("constraint")


class Constraint(nn.Module):
    """Base class: a statistic F of a future and its requested value F₀ (see the module docstring)."""

    name: ClassVar[str] = ""
    num_statistics: ClassVar[int] = 1

    def statistic(self, future: Tensor, context: Tensor) -> Tensor:
        """F(x̂, y): ``future (B, T_out, H, W, C)``, ``context (B, T_in, H, W, C)`` → ``(B, K)``."""
        raise NotImplementedError

    def target(self, context: Tensor, **options: Any) -> Tensor:
        """F₀(y): ``context (B, T_in, H, W, C)`` → ``(B, K)``."""
        raise NotImplementedError

    def build_options(self) -> dict[str, Any]:
        """Keyword arguments rebuilding an untrained copy (``CONSTRAINTS.create(name, **options)``)."""
        return {}

    def train(self, mode: bool = True) -> Constraint:
        # a constraint is fixed knowledge: its networks stay in eval mode inside a training system
        return super().train(False)


@CONSTRAINTS.register("mean_intensity")
class MeanIntensity(Constraint):
    """Anticipated mean intensity (SEVIR, radar): F = τ, F₀ = μ_τ + n·σ_τ.

    Args:
        regressor: a fitted :class:`ContextIntensityRegressor` (needed by ``target`` only).
        regressor_config: config (or its dict) of a new, unfitted regressor when none is given.
    """

    name = "mean_intensity"

    def __init__(
        self,
        regressor: ContextIntensityRegressor | None = None,
        regressor_config: IntensityRegressorConfig | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if regressor is None:
            if isinstance(regressor_config, dict):
                regressor_config = IntensityRegressorConfig(**regressor_config)
            regressor = ContextIntensityRegressor(regressor_config)
        self.regressor = regressor

    def statistic(self, future: Tensor, context: Tensor) -> Tensor:
        """τ = mean of the future over its finite pixels, ``(B, 1)``; ``context`` is not used."""
        return future_mean(future).to(future.dtype if future.is_floating_point() else torch.float32)

    def target(self, context: Tensor, anticipate: str | None = None, n_sigma: float | None = None) -> Tensor:
        """F₀ = μ_τ + n·σ_τ, ``(B, 1)``, from the context alone.

        Args:
            context: ``(B, T_in, H, W, C)``.
            anticipate: n as text, e.g. ``"+2sigma"`` (the CLI's ``--anticipate``).
            n_sigma: n as a number. Give at most one of the two; neither means n = 0 (the
                expected intensity).
        """
        if anticipate is not None and n_sigma is not None:
            raise ValueError("give either anticipate='±Nsigma' or n_sigma=N, not both")
        n = parse_anticipate(anticipate) if anticipate is not None else float(n_sigma or 0.0)
        return self.regressor.anticipated(context, n)

    def build_options(self) -> dict[str, Any]:
        return {"regressor_config": self.regressor.config.to_dict()}


@CONSTRAINTS.register("nbody_energy")
class NBodyEnergy(Constraint):
    """Energy conservation (N-body MNIST): F = Ê(future), F₀ = Ê(context).

    Args:
        estimator: a trained :class:`EnergyEstimator`.
        estimator_config: config (or its dict) of a new, untrained estimator when none is given.
    """

    name = "nbody_energy"

    def __init__(
        self,
        estimator: EnergyEstimator | None = None,
        estimator_config: EnergyEstimatorConfig | dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if estimator is None:
            if isinstance(estimator_config, dict):
                estimator_config = EnergyEstimatorConfig(**estimator_config)
            estimator = EnergyEstimator(estimator_config)
        self.estimator = estimator

    def statistic(self, future: Tensor, context: Tensor) -> Tensor:
        """Estimated energy of the future clip, ``(B, 1)``; ``context`` is not used."""
        return self.estimator(future)

    def target(self, context: Tensor) -> Tensor:
        """Estimated energy of the context clip, ``(B, 1)``: what a conserving forecast keeps."""
        return self.estimator(context)

    def build_options(self) -> dict[str, Any]:
        return {"estimator_config": self.estimator.config.to_dict()}


def get_constraint(name: str, **kwargs: Any) -> Constraint:
    """Build a registered constraint by (case-insensitive) name; unknown names list the valid ones."""
    return CONSTRAINTS.create(name, **kwargs)


def list_constraints() -> list[str]:
    """Names of the registered constraints, sorted."""
    return CONSTRAINTS.names()
