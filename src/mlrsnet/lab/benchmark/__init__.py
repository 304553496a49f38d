"""The held-out transfer benchmark: declared task sets, learning-rate tiers, statistics.

- :mod:`~mlrsnet.lab.benchmark.tasksets`: the tasks a learned schedule may be meta-trained
  on, and the held-out targets that count as transfer evidence (disjoint by declaration).
- :mod:`~mlrsnet.lab.benchmark.plan`: which runs make the suite (methods × tiers × seeds).
- :mod:`~mlrsnet.lab.benchmark.execute`: runs them on Ray, one JSON line per finished run.
- :mod:`~mlrsnet.lab.benchmark.stats`: paired bootstrap intervals, win/tie/loss, ranks.
- :mod:`~mlrsnet.lab.benchmark.report`: BENCHMARKS.md and its figures from the records.

``benchmarks/heldout.py`` is the command line.
"""
