"""Cuboid attention (Earthformer, NeurIPS 2022), one concept per module.

* ``decomposition`` — clamp, pad, shift, regroup into cuboids and back
* ``masks`` — shifted-window and padding masks
* ``relative_bias`` — relative position bias
* ``global_vectors`` — the P global vectors' read/write paths
* ``self_attention`` / ``cross_attention`` — layers and stacked blocks
* ``patterns`` — named decompositions (``axial``, ``video_swin_2x8``, ``cross_1x1`` …)
* ``connectivity`` — :func:`allowed_attention`, the layer's attention matrix as NumPy bools
"""

from earthcast.nn.cuboid.connectivity import allowed_attention as allowed_attention
from earthcast.nn.cuboid.cross_attention import CuboidCrossAttention as CuboidCrossAttention
from earthcast.nn.cuboid.cross_attention import CuboidCrossAttentionBlock as CuboidCrossAttentionBlock
from earthcast.nn.cuboid.patterns import CROSS_PATTERNS as CROSS_PATTERNS
from earthcast.nn.cuboid.patterns import SELF_PATTERNS as SELF_PATTERNS
from earthcast.nn.cuboid.patterns import get_cross_pattern as get_cross_pattern
from earthcast.nn.cuboid.patterns import get_self_pattern as get_self_pattern
from earthcast.nn.cuboid.patterns import list_patterns as list_patterns
from earthcast.nn.cuboid.self_attention import CuboidSelfAttention as CuboidSelfAttention
from earthcast.nn.cuboid.self_attention import CuboidSelfAttentionBlock as CuboidSelfAttentionBlock
