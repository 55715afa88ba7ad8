"""``earthcast benchmark``: the papers' comparison tables, rerun on any data set with one command.

``run_benchmark(BenchmarkConfig(...))`` trains every model under the same budget, scores all on
the same test split with the data set's metrics and writes ``table.md``, ``table.csv`` and
``plot.png`` (see ``runner.py`` for the layout and the fairness rules, ``models.py`` for how short
model names resolve, ``calibrate.py`` for how a wall-clock budget becomes steps, ``records.py`` for
which earlier results are reused and tabulated, ``table.py`` for the columns).
"""

from earthcast.benchmark.budget import Budget as Budget
from earthcast.benchmark.budget import parse_budget as parse_budget
from earthcast.benchmark.runner import BenchmarkConfig as BenchmarkConfig
from earthcast.benchmark.runner import run_benchmark as run_benchmark
