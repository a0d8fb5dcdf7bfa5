"""python -m vgbench: the same app as vgbench-train."""

from vgbench.app import main

main()
