"""``/dashboard``: the worker's current plans and state as charts (filled in below)."""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TableT


def register_dashboard(
    app: faust.App, *, states: TableT[Any, Any], plans: TableT[Any, Any]
) -> None:
    """Attach ``/dashboard`` (HTML, inline SVG) and ``/dashboard/data`` (its JSON)."""
