"""Weight initialisation used by the Earthformer family (SPEC §2.6)."""

from __future__ import annotations

from torch import nn


def init_earthformer_(module: nn.Module) -> None:
    """Initialise every sub-module in place.

    Linear: Kaiming-normal (fan_in, linear gain), zero bias. Conv: Kaiming-normal (fan_out,
    leaky-relu a=0.1), zero bias. Norms: weight 1, bias 0. Embeddings: truncated normal std 0.02.
    Modules that own a custom ``reset_parameters`` for their own tensors (bias tables, global
    vectors) are left as created.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, a=0.1, mode="fan_out", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=0.02)
