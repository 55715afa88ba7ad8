"""Classical nowcasting forecasters through pysteps (extra ``earthcast[pysteps]``), no training.

* :class:`LKExtrapolation`: Lucas-Kanade optical flow + semi-Lagrangian extrapolation,
  ``(B, T_in, H, W, C_in)`` → ``(B, T_out, H, W, C_out)`` (registered as ``pysteps_extrapolation``).
* :class:`STEPSNowcast`: the STEPS ensemble, ``(B, T_in, H, W, C_in)`` →
  ``(B, S, T_out, H, W, C_out)`` (registered as ``pysteps_steps``).
* :mod:`~earthcast.models.classical.scaling`: normalised data ↔ rain rate ↔ dBR at the edge.

Importing this package does not import pysteps; the first forward does.
"""

from earthcast.models.classical.extrapolation import LKExtrapolation as LKExtrapolation
from earthcast.models.classical.extrapolation import LKExtrapolationConfig as LKExtrapolationConfig
from earthcast.models.classical.steps import STEPSConfig as STEPSConfig
from earthcast.models.classical.steps import STEPSNowcast as STEPSNowcast
