"""vgbench's Hydra plugins: the launchers `parallel` (local processes, capped per GPU) and `stacked` (runs of
one shape trained as one vectorised model), and the sweeper `vgbench` (the basic sweeper, validating a
sweep fast). Hydra finds them in the hydra_plugins namespace package."""
