"""vgbench's Hydra launchers: `parallel` (local processes, capped per GPU) and `stacked` (runs of one shape
trained as one vectorised model). Hydra finds them in the hydra_plugins namespace package."""
