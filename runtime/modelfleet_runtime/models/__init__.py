"""Model loading, versions and batching."""
