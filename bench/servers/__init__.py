"""How the benchmark starts each server, each from its own venv under bench/.work/venvs/."""
