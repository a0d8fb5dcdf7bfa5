"""vgbench's Hydra configs: conf/ in the repository, the package vgbench.conf once installed."""
