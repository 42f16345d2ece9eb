"""How long each phase of one model version's start took: download, verify, load, warmup.

The model repository makes one ``StartPhases`` per version it starts and passes it to the
storage fetch, which times its download and verification; the load and warm-up times come
from the loaded ``OnnxModel``. The repository then exports them as
``modelfleet_model_start_phase_seconds`` (``metrics.py``). Standard library only.
"""

from __future__ import annotations

import time

PHASES = ("download", "verify", "load", "warmup")
"""Every phase a start reports (0 for a phase that had nothing to do, e.g. no download)."""


class StartPhases:
    """Seconds per phase of one start, added up when a phase runs in several pieces."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    def add(self, phase: str, *, since: float) -> float:
        """Add the time from ``since`` (a ``time.perf_counter()`` reading) to now to
        ``phase``; returns now, the start of whatever comes next."""
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now
