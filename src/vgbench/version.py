"""vgbench's version, as installed (summary.json records it): the ground floor, importing nothing."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vgbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
