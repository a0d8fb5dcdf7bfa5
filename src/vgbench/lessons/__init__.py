"""The course companion: runnable lessons on the benchmark's own code.

    vgbench-lesson gradient-descent   gradient descent and the learning rate
    vgbench-lesson backprop           backpropagation by hand, checked against autograd
    vgbench-lesson activations        the activation functions compared

Each writes its figures and a text summary (summary.md) into outputs/lessons/NAME/ and prints the text.
"""

from __future__ import annotations

import importlib
from argparse import RawDescriptionHelpFormatter
from pathlib import Path

from vgbench.errors import CommandParser, exit_with_error

LESSONS = {
    "gradient-descent": "vgbench.lessons.gradient_descent",
    "backprop": "vgbench.lessons.backprop",
    "activations": "vgbench.lessons.activations",
}


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(prog="vgbench-lesson", description=__doc__, formatter_class=RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"one of: {', '.join(LESSONS)}")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: outputs/lessons/NAME)")
    args = parser.parse_args(argv)
    if args.name not in LESSONS:
        exit_with_error(f"lesson {args.name!r} does not exist; choose one of: {', '.join(LESSONS)}")
    out_dir = args.out or Path("outputs") / "lessons" / args.name
    result = importlib.import_module(LESSONS[args.name]).run_lesson(out_dir)
    print(result if isinstance(result, str) else result.text)
    print(f"figures and summary.md in {out_dir}")
