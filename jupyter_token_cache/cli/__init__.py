"""The ``jupyter-token-cache`` command (``jupyter token-cache`` with jupyter_core)."""

from .app import TokenCacheApp, main, run

__all__ = ["TokenCacheApp", "main", "run"]
