"""``log_stage_loss``: the one way every earthcast Lightning system logs its loss per stage.

Training logs per step (shown in the progress bar) and per epoch; validation and test log per
epoch only, synchronised across processes so DDP runs report the global mean, not rank 0's.
"""

from __future__ import annotations

import lightning as L
from torch import Tensor


def log_stage_loss(module: L.LightningModule, stage: str, loss: Tensor, batch_size: int) -> None:
    """Log ``loss`` as ``<stage>/loss`` (``stage`` ∈ train | val | test) with the rules above."""
    on_step = stage == "train"
    module.log(
        f"{stage}/loss",
        loss,
        on_step=on_step,
        on_epoch=True,
        prog_bar=on_step,
        sync_dist=not on_step,
        batch_size=batch_size,
    )
