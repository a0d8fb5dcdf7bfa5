"""vgbench: how gradients flow through deep networks, measured (and predicted)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vgbench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
