"""The allocation MIP: sparse container (``lp``), model building (``build``), solve (``solve``)."""

from allocator.model.solve import solve

__all__ = ["solve"]
