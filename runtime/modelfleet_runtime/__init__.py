"""ModelFleet's inference runtime: one FastAPI + ONNX Runtime server for every model."""

__version__ = "0.1.0"
"""The distribution's version: pyproject.toml reads it from here (``tool.setuptools.dynamic``),
so a server's start need not import ``importlib.metadata`` to look it up (about 30 ms)."""
