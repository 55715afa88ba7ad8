"""``trainer.compile``: run a system's networks through ``torch.compile``.

The networks are compiled *in place* (``nn.Module.compile``), so parameter names, checkpoints,
the EMA copy and resuming are exactly as without compilation. Under compilation the fused eager
kernels of ``earthcast.nn`` step aside for plain PyTorch ops (``earthcast.nn.precision``), which
Inductor fuses itself; every Earthformer preset traces as one graph (``fullgraph``), forward and
backward, and the tests check that the compiled network computes the eager one's outputs and
gradients. The first step of each mode (training; evaluation without gradients) pays the compile
time: seconds to minutes, longest on a CPU, where the fused eager kernels are also faster than
Inductor's code (measured in the README, *torch.compile*).
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch import callbacks as cb
from torch import nn

from earthcast.training.config import CompileMode


def networks_to_compile(system: L.LightningModule) -> list[nn.Module]:
    """The networks ``system`` runs every step: a forecaster's network, a latent diffusion
    model's denoiser, and their EMA copies."""
    nets = [getattr(system, "net", None)]
    prediff = getattr(system, "prediff", None)
    if prediff is not None:
        nets.append(prediff.denoiser)
    ema = getattr(system, "ema", None)
    if ema is not None:
        nets.append(ema.shadow)
    return [n for n in nets if n is not None]


def compile_in_place(
    net: nn.Module, mode: CompileMode | bool = True, backend: str = "inductor", fullgraph: bool = False
) -> bool:
    """``torch.compile`` ``net`` in place (once); ``mode`` ``True`` means ``"default"``;
    ``fullgraph`` makes any graph break an error. Returns whether it was compiled now."""
    if getattr(net, "_compiled_call_impl", None) is not None:  # where nn.Module.compile keeps it
        return False
    if backend == "inductor":
        net.compile(mode=None if mode in (True, "default") else mode, fullgraph=fullgraph)
    else:  # other backends take no mode (tests trace with "aot_eager")
        net.compile(backend=backend, fullgraph=fullgraph)
    return True


class CompileNetworks(cb.Callback):
    """Compiles :func:`networks_to_compile` when a fit, validation, test or prediction starts
    (after ``setup``, which may build networks whose shapes come from the data)."""

    def __init__(self, mode: CompileMode | bool = True, backend: str = "inductor") -> None:
        self.mode, self.backend = mode, backend
        self.compiled: list[str] = []  # class names, for logs and tests

    def _compile(self, pl_module: L.LightningModule) -> None:
        for net in networks_to_compile(pl_module):
            if compile_in_place(net, self.mode, self.backend):
                self.compiled.append(type(net).__name__)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)
