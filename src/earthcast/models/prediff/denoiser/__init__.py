"""PreDiff latent networks: the denoiser ε_θ(z_t, t, z_cond) and the alignment network U_φ(z_t, t).

* ``config`` — :class:`DenoiserConfig`, :class:`AlignmentConfig` and their named presets
* ``time_embedding`` — sinusoidal timestep features + MLP
* ``resnet3d`` — 3-D ResNet block with an optional additive time embedding
* ``stage`` — one level: (time ResNet → cuboid self-attention) × depth; shared initialisation
* ``earthformer_unet`` — :class:`EarthformerUNet` (SPEC §5.4)
* ``alignment`` — :class:`AlignmentNetwork` with per-frame attention pooling (SPEC §5.5)
"""

from earthcast.models.prediff.denoiser.alignment import AlignmentNetwork as AlignmentNetwork
from earthcast.models.prediff.denoiser.config import ALIGNMENT_PRESETS as ALIGNMENT_PRESETS
from earthcast.models.prediff.denoiser.config import DENOISER_PRESETS as DENOISER_PRESETS
from earthcast.models.prediff.denoiser.config import AlignmentConfig as AlignmentConfig
from earthcast.models.prediff.denoiser.config import DenoiserConfig as DenoiserConfig
from earthcast.models.prediff.denoiser.config import get_alignment_config as get_alignment_config
from earthcast.models.prediff.denoiser.config import get_denoiser_config as get_denoiser_config
from earthcast.models.prediff.denoiser.earthformer_unet import EarthformerUNet as EarthformerUNet
