"""vgbench.run_logs: a stack's lines into every run's log, a line about one run into its own only."""

import logging

from vgbench.run_logs import OwnLinesOnly, RunLogFiles, about


def test_each_runs_file_gets_the_stacks_lines_and_its_own(tmp_path):
    folders = [tmp_path / name for name in ("a", "b", "c", "held")]
    for folder in folders:
        folder.mkdir()
    logger = logging.getLogger("test_run_logs")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    first = logging.FileHandler(folders[0] / "train.log")  # the first run's, as Hydra opens it
    first.addFilter(OwnLinesOnly(folders[0]))
    others = RunLogFiles(folders[1:3], "train", logging.Formatter("%(levelname)s %(message)s"))  # not "held"
    logger.addHandler(first)
    logger.addHandler(others)
    try:
        logger.info("3 run(s) of a 2x8 MLP")
        for folder in folders:
            logger.info("%s: epoch 1/1", folder.name, **about(folder))
        logger.warning("a warning about the stack")
    finally:
        for handler in (first, others):
            logger.removeHandler(handler)
            handler.close()
    texts = {folder.name: (folder / "train.log").read_text() for folder in folders[:3]}
    assert texts["a"] == "3 run(s) of a 2x8 MLP\na: epoch 1/1\na warning about the stack\n"
    assert texts["b"] == "INFO 3 run(s) of a 2x8 MLP\nINFO b: epoch 1/1\nWARNING a warning about the stack\n"
    assert texts["c"] == "INFO 3 run(s) of a 2x8 MLP\nINFO c: epoch 1/1\nWARNING a warning about the stack\n"
    assert not (folders[3] / "train.log").exists()  # a folder that holds another run gets nothing


def test_a_relative_and_an_absolute_folder_name_the_same_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "line", (), None)
    record.__dict__.update(about(tmp_path / "run")["extra"])
    assert OwnLinesOnly(tmp_path / "run").filter(record)
    assert OwnLinesOnly(tmp_path.relative_to(tmp_path) / "run").filter(record)
    assert not OwnLinesOnly(tmp_path / "other").filter(record)
