"""The configuration reference documents every configurable class the package defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from traitlets.config import Application, Configurable
from traitlets.utils.importstring import import_item

import jupyter_token_cache

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"
CLI_PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def configurable_classes() -> set[type[Configurable]]:
    """Classes defined in the package with settings of their own (``config=True`` traits)."""
    found = set()
    for module in pkgutil.walk_packages(jupyter_token_cache.__path__, "jupyter_token_cache."):
        loaded = importlib.import_module(module.name)
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if (
                cls.__module__ == loaded.__name__
                and issubclass(cls, Configurable)
                and not issubclass(cls, Application)  # command-line options: docs/cli.md
                and cls.class_own_traits(config=True)
            ):
                found.add(cls)
    return found


def documented_classes() -> list[type]:
    names = re.findall(r"^\.\. autoconfigurable:: (\S+)$", REFERENCE.read_text(), re.M)
    return [import_item(name) for name in names]


def test_every_configurable_class_is_in_the_reference() -> None:
    documented = documented_classes()
    assert documented, f"no autoconfigurable directive in {REFERENCE}"
    # a base class is covered by a documented subclass, which shows its inherited traits
    covered = {base for cls in documented for base in cls.__mro__}
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__}" for cls in configurable_classes() - covered
    )
    assert not missing, (
        f"add an '.. autoconfigurable::' directive to {REFERENCE.name} for: {', '.join(missing)}"
    )


def test_the_reference_names_only_configurable_classes() -> None:
    for cls in documented_classes():
        assert isinstance(cls, type) and issubclass(cls, Configurable), cls


def test_every_command_and_option_is_on_the_cli_page() -> None:
    from jupyter_token_cache.cli import TokenCacheApp

    page = CLI_PAGE.read_text()
    missing = []
    for name, (path, _) in TokenCacheApp.subcommands.items():
        if f"### `{name}" not in page:
            missing.append(name)
        command = import_item(path)
        for option in [*command.aliases, *command.flags]:
            shown = f"-{option}" if len(option) == 1 else f"--{option}"
            if not re.search(rf"`[^`]*{re.escape(shown)}\b", page):
                missing.append(f"{name} {shown}")
    assert not missing, f"document in {CLI_PAGE.name}: {', '.join(missing)}"
