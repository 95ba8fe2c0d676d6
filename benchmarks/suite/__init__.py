"""The benchmark suite behind ``python cli.py bench``.

One registry of stages (:mod:`.stages`), one timer (:mod:`.timer`), the
machine's facts (:mod:`.machine`), the physical ceilings (:mod:`.ceilings`),
the naive per-image baseline (:mod:`.naive`), the versioned JSON record
(:mod:`.record`), the run itself (:mod:`.runner`) and what is made from the
history of records: tables, a chart, comparisons (:mod:`.report`).

Imports point one way: ``cli`` → ``benchmarks.suite`` → ``engine`` → ``kernels``;
nothing here imports ``cli``, and ``engine`` never imports this. Heavy
packages (torch, numba, DALI) are imported inside the stages that need them.
"""
