"""PreDiff knowledge control: constraints F(x̂, y), their requested values F₀(y), and guidance wiring.

Axis legend: ``b`` batch, ``t`` time, ``h``/``w`` space, ``c`` channel, ``k`` constrained statistics.

* ``constraints`` — :class:`Constraint`, the registry ``CONSTRAINTS`` (``mean_intensity``,
  ``nbody_energy``), :func:`get_constraint`, :func:`list_constraints`
* ``intensity`` — :class:`ContextIntensityRegressor`: μ_τ, σ_τ of the future mean intensity from the
  context only; :func:`parse_anticipate` (``"+2sigma"`` → 2.0)
* ``energy`` — :class:`EnergyEstimator`: total N-body energy from frames
* ``guided`` — :func:`make_guidance`: alignment network + constraint → ``KnowledgeGuidance``;
  :func:`make_decoded_guidance`: the same rule on the decoded ẑ₀'s statistic, no U_φ needed

The alignment network U_φ is ``denoiser/alignment.py``; its training system is
``earthcast.training.alignment_module.AlignmentSystem``, the estimator's
``earthcast.training.estimator_module.EstimatorSystem``.
"""

from earthcast.models.prediff.knowledge.constraints import CONSTRAINTS as CONSTRAINTS
from earthcast.models.prediff.knowledge.constraints import Constraint as Constraint
from earthcast.models.prediff.knowledge.constraints import MeanIntensity as MeanIntensity
from earthcast.models.prediff.knowledge.constraints import NBodyEnergy as NBodyEnergy
from earthcast.models.prediff.knowledge.constraints import get_constraint as get_constraint
from earthcast.models.prediff.knowledge.constraints import list_constraints as list_constraints
from earthcast.models.prediff.knowledge.energy import EnergyEstimator as EnergyEstimator
from earthcast.models.prediff.knowledge.energy import EnergyEstimatorConfig as EnergyEstimatorConfig
from earthcast.models.prediff.knowledge.guided import GUIDE_BY as GUIDE_BY
from earthcast.models.prediff.knowledge.guided import make_decoded_guidance as make_decoded_guidance
from earthcast.models.prediff.knowledge.guided import make_guidance as make_guidance
from earthcast.models.prediff.knowledge.intensity import (
    ContextIntensityRegressor as ContextIntensityRegressor,
)
from earthcast.models.prediff.knowledge.intensity import (
    IntensityRegressorConfig as IntensityRegressorConfig,
)
from earthcast.models.prediff.knowledge.intensity import parse_anticipate as parse_anticipate
