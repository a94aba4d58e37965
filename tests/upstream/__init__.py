"""Tests of verifying upstream tokens (jupyter_token_cache.upstream)."""
