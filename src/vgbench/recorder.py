"""Where a run's measurements go: the series tables, TensorBoard (when on) and the summary's profiles.

The loop hands every measurement and every epoch's metrics to a Recorder; the Recorder never computes
a statistic itself (that is the monitor's job) and the monitor never writes anything (this does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vgbench.monitor import Measurement
from vgbench.series import Series, profile
from vgbench.summary import Profile, Summary


class Recorder:
    def __init__(
        self,
        run_dir: Path,
        n_layers: int,
        tensorboard: bool,
        resumed_state: dict[str, Any] | None,
        resume_step: int | None,
    ) -> None:
        resumed_state = resumed_state or {}
        self.run_dir = run_dir
        self.series = Series(**resumed_state.get("series", {}))
        self.profiles: dict[str, Profile] = resumed_state.get("profiles", {})  # "step0" and "final"
        self.jacobian: dict[str, Any] | None = resumed_state.get("jacobian")  # at step 0, when measured
        self.last: Measurement | None = None
        self.tensorboard = None
        if tensorboard:  # imported here: TensorBoard and matplotlib take a second to load, unused without it
            from vgbench.tb_writer import TensorBoardWriter

            self.tensorboard = TensorBoardWriter(run_dir, n_layers, purge_step=resume_step)

    def measurement(self, measurement: Measurement, epoch: int) -> None:
        self.series.add(measurement, epoch)
        if measurement.step == 0:
            self.profiles["step0"] = profile(measurement)
        self.profiles["final"] = profile(measurement)
        self.last = measurement
        if self.tensorboard:
            self.tensorboard.measurement(measurement)

    def epoch_end(self, step: int, metrics: dict[str, float], lr: float) -> None:
        self.series.write(self.run_dir)
        if self.tensorboard:
            self.tensorboard.epoch_end(step, metrics, lr, self.last)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run continues the same tables and profiles."""
        return {"series": self.series.state(), "profiles": self.profiles, "jacobian": self.jacobian}

    def finish(self, summary: Summary) -> None:
        self.series.write(self.run_dir)
        if self.tensorboard:
            self.tensorboard.hparams(summary, summary["steps"])
            if (summary.get("theory") or {}).get("applies"):
                self.tensorboard.theory(summary["theory"])
            self.tensorboard.close()

    def ratio(self, metric: str, which: str) -> float | None:
        """A run-level number of the step-0 or the last profile (None without the monitor)."""
        return self.profiles[which][metric] if which in self.profiles else None
