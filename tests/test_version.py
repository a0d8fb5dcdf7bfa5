"""vgbench's version (vgbench.version): the installed distribution's, as pyproject.toml states it."""

import re

import vgbench
from tests.conftest import REPO
from vgbench.version import __version__


def test_the_version_is_the_projects_and_the_package_exports_it():
    declared = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert __version__ == declared == vgbench.__version__
