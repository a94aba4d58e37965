"""Storage: bytes, keys, TTLs and backends — nothing about JupyterHub."""

from .engine import TokenCache, TokenCacheConfigError, close_all
from .store import CacheKey

__all__ = ["CacheKey", "TokenCache", "TokenCacheConfigError", "close_all"]
