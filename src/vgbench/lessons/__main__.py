"""python -m vgbench.lessons: the same as vgbench-lesson."""

from vgbench.lessons import main

main()
