"""ModelFleet's inference runtime: one FastAPI + ONNX Runtime server for every model."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelfleet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
