"""Sphinx configuration; the configuration reference is generated from the traits."""

from __future__ import annotations

from pathlib import Path

from jupyter_token_cache import TokenCache, __version__

project = "jupyter-token-cache"
author = "jupyter-token-cache developers"
release = version = __version__
extensions = ["myst_parser"]
myst_enable_extensions = ["colon_fence"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = "jupyter-token-cache"

HERE = Path(__file__).parent


def _write_config_reference() -> None:
    """docs/reference/config.rst: every configurable trait with its help, from the code."""
    lines = [
        "Configuration reference",
        "=======================",
        "",
        "Every setting below goes in ``jupyterhub_config.py`` as ``c.<Class>.<name> = ...``.",
        "This page is generated from the code's traits when the docs are built.",
        "",
    ]
    lines.append(TokenCache.class_config_rst_doc())
    (HERE / "reference").mkdir(exist_ok=True)
    (HERE / "reference" / "config.rst").write_text("\n".join(lines) + "\n")


_write_config_reference()
