"""Mint and cache JupyterHub API tokens for notebooks and services."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .cache import CacheKey
from .tokens.policy import TokenCache

__all__ = ["CacheKey", "TokenCache", "TokenCacheMixin", "__version__", "with_token_cache"]


def __getattr__(name: str) -> Any:
    # The hub adapter imports JupyterHub's app machinery; code that only needs the
    # client or the cache (a notebook, a service) should not pay for it.
    if name in ("TokenCacheMixin", "with_token_cache"):
        from .hub import authenticator

        return getattr(authenticator, name)
    raise AttributeError(name)
