"""collapse-eval: did fine-tuning improve the domain without collapsing general ability?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("collapse-eval")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
