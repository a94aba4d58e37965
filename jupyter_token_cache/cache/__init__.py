"""Storage: bytes, keys, TTLs and backends — nothing about JupyterHub."""

from .engine import CacheEngine, LeaseTimeout, TokenCacheConfigError, close_all
from .store import CacheKey

__all__ = ["CacheEngine", "CacheKey", "LeaseTimeout", "TokenCacheConfigError", "close_all"]
