"""Simulation and evaluation: simulated operations, providers and service outcome driving the
real event contract, the closed loop, and ``flexforce evaluate``.

Modules, one job each: :mod:`.scenario` (validated YAML), :mod:`.demand` (real or synthetic
demand traces), :mod:`.operations` (catalogue and ticket-volume events), :mod:`.providers`
(answers and capacity in place), :mod:`.dispatch` (compliant routing of capacity in place),
:mod:`.outcome` (service achieved, costs), :mod:`.controllers` (planner or reactive autoscaler),
:mod:`.loop` (the in-process closed loop), :mod:`.evaluate` (per-policy runs and reports).
"""
