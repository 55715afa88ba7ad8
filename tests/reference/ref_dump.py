"""Run with the *reference* venv: build a reference Earthformer, dump weights, input and output.

usage: REF_PYTHON ref_dump.py CONFIG OUT.pt [--hw H,W] [--seed S] [--set KEY=VALUE ...]

CONFIG is a name known to ``../shared/bench/bench_ref.py`` (nbody, enso, sevirlr, sevir, …); the
model is built exactly as the shipped training script would from its shipped YAML. The output is
computed in eval mode on a seeded random input. ``--set`` overrides a constructor argument of the
reference model (the value is read as a Python literal, else kept as a string).
"""

import argparse
import ast
import os
import sys
import warnings

warnings.filterwarnings("ignore")


def _find_bench_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("EARTHCAST_SHARED", ""), os.path.join(here, "..", "..", "..", "shared")]
    for root in candidates:
        path = os.path.join(root, "bench")
        if root and os.path.isfile(os.path.join(path, "bench_ref.py")):
            return path
    raise SystemExit("cannot find shared/bench/bench_ref.py; set EARTHCAST_SHARED")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--hw", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--double", action="store_true", help="run in float64 (rounding-free comparison)")
    parser.add_argument("--perturb", action="store_true", help="add noise to every parameter")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    sys.path.insert(0, _find_bench_dir())
    import bench_ref
    import torch

    hw = tuple(int(v) for v in args.hw.split(",")) if args.hw else None
    torch.manual_seed(args.seed)
    cls, kwargs, _ = bench_ref.build_model_kwargs(args.config, hw_override=hw)
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in kwargs:
            raise SystemExit(f"--set {key}: not an argument of {cls.__name__} here")
        kwargs[key] = _literal(value)
    model = cls(**kwargs).eval()
    if args.perturb:  # so zero-initialised biases or symmetric weights cannot hide a mismatch
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(args.batch, *kwargs["input_shape"])
    if args.double:
        model, x = model.double(), x.double()
    with torch.no_grad():
        y = model(x)
    torch.save({"state_dict": model.state_dict(), "input": x, "output": y, "kwargs": kwargs}, args.out)


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


if __name__ == "__main__":
    main()
