"""Object storage: one module per URI scheme behind the ModelSource seam (see base.py)."""
