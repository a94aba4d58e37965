"""Mint and cache JupyterHub API tokens for notebooks and services."""

from ._version import __version__
from .cache import CacheKey, TokenCache

__all__ = ["CacheKey", "TokenCache", "__version__"]
