"""python -m vgbench.report: the same as vgbench-report."""

from vgbench.report import main

main()
