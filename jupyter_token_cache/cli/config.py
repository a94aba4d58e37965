"""The offline subcommands: check-config and generate-config."""

from __future__ import annotations

import asyncio
import json
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Float, TraitError, TraitType, Unicode
from traitlets.config import Config, Configurable
from traitlets.config.loader import LazyConfigValue, PyFileConfigLoader

from ..cache import TokenCacheConfigError, close_all
from ..cache.codec import EncryptionKeyError, parse_keys
from ..cache.shared import SharedStore
from ..hub.authenticator import AuthenticatorNotFound, TokenCacheMixin, authenticator_class
from ..scopes import held_by_users, scope_error
from ..services.auth import CachedTokenChecks
from ..services.checker import AnswerCache
from ..tokens.policy import Problem, TokenCache
from .app import Command
from .errors import FAILED, OK, USAGE, CommandError, warn
from .output import visible

#: Where each generated section goes, as its heading says.
SECTIONS: list[tuple[str, list[type[Configurable]]]] = [
    ("In the hub's jupyterhub_config.py", [TokenCache]),
    (
        "In the configuration of a service that checks tokens with CachedHubAuth or "
        "CachedHubOAuth (jupyter_token_cache.services)",
        [CachedTokenChecks, AnswerCache],
    ),
]

#: Never echoed: a setting whose bad value may be a secret.
SECRET_SETTINGS = {"encryption_key", "url"}


class CheckConfigCommand(Command):
    """Load a jupyterhub_config.py as the hub does; check the token cache settings."""

    name = "jupyter-token-cache check-config"
    description = """Load a jupyterhub_config.py as `jupyterhub -f` does and check every
    TokenCache setting offline: values each setting accepts, scopes JupyterHub knows
    (with c.JupyterHub.custom_scopes), lifetimes against minimum_lifetime, the
    encryption key a shared backend needs, and whether that backend answers. Run it with
    the hub's environment (JUPYTERHUB_CRYPT_KEY). Exit status 1 when a problem is found."""
    positional = 1

    ping_timeout = Float(
        3.0,
        config=True,
        help="""Seconds to wait for a shared backend (Redis, memcached) to answer one call.""",
    )
    aliases = {"ping-timeout": "CheckConfigCommand.ping_timeout"}

    def run(self) -> int:
        path = Path(self.extra_args[0] if self.extra_args else "jupyterhub_config.py")
        if not path.is_file():
            raise CommandError(f"{path}: no such file (give the hub's jupyterhub_config.py)", USAGE)
        problems = check_config(path, ping_timeout=self.ping_timeout)
        if self.json_output:
            report = {
                "file": str(path),
                "ok": not problems,
                "problems": [p._asdict() for p in problems],
            }
            self.out(json.dumps(report, indent=2))
        else:
            for problem in problems:
                self.out(f"error: {visible(problem.setting)}: {visible(problem.message)}")
                if problem.fix:
                    self.out(f"  fix: {visible(problem.fix)}")
            count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
            where = visible(path)
            self.out(f"{where}: {count} found" if problems else f"{where}: no problems found")
        return FAILED if problems else OK


def check_config(path: Path, *, ping_timeout: float) -> list[Problem]:
    """Every problem with the token cache settings of the config file at ``path``."""
    try:
        config = PyFileConfigLoader(path.name, path=str(path.parent.resolve())).load_config()
    except AuthenticatorNotFound as e:  # with_token_cache("github") without oauthenticator
        return [_authenticator_not_found(e)]
    except Exception as e:  # noqa: BLE001 - any error in the operator's file is a finding
        return [
            Problem(
                str(path),
                f"the file does not load: {type(e).__name__}: {_line(e)}",
                f"run `python {path}` with `c = get_config()` defined, or `jupyterhub -f {path}`",
            )
        ]
    problems: list[Problem] = []
    hub = config.JupyterHub
    custom = _value(hub.get("custom_scopes"), {})
    if custom:
        from jupyterhub.scopes import define_custom_scopes

        try:
            define_custom_scopes(custom)
        except (ValueError, TypeError, AttributeError) as e:
            fix = (
                'write each as "custom:NAME": {"description": "..."} (https://jupyterhub.'
                "readthedocs.io/en/stable/rbac/scopes.html#custom-scopes)"
            )
            problems.append(Problem("JupyterHub.custom_scopes", _line(e), fix))
    problems += _authenticator(hub.get("authenticator_class"))
    cache, found = _settings(config)
    problems += found
    cap = _value(hub.get("token_expires_in_max_seconds"), 0)
    problems += cache.problems(
        scope_error, max_lifetime=cap if isinstance(cap, int) else 0, unheld=_held_by_users(config)
    )
    problems += _storage(cache, config, ping_timeout)
    return problems


def _authenticator(configured: Any) -> list[Problem]:
    """The hub's authenticator must carry the token cache, or its settings do nothing."""
    name = configured or "pam"  # JupyterHub's default
    try:
        cls = authenticator_class(name)
    except AuthenticatorNotFound as e:
        return [_authenticator_not_found(e)]
    except Exception:  # noqa: BLE001 - not importable here: the hub's environment may differ
        return []
    if not isinstance(cls, type) or issubclass(cls, TokenCacheMixin):
        return []
    shown = repr(name) if isinstance(name, str) else cls.__name__
    which = shown if configured else f"the default authenticator ({shown})"
    return [
        Problem(
            "JupyterHub.authenticator_class",
            f"{which} does not include the token cache: the TokenCache settings have no effect",
            f"c.JupyterHub.authenticator_class = with_token_cache({shown}) "
            "(from jupyter_token_cache import with_token_cache)",
        )
    ]


def _held_by_users(config: Config) -> Any:
    """The check of scopes no user can hold (TokenCache.problems' ``unheld``), from the
    file's roles; None when the authenticator manages roles (it gives them at login)."""
    from jupyterhub.app import JupyterHub

    if any(
        _value(section.get("manage_roles"), False)
        for section in config.values()
        if isinstance(section, Config)
    ):
        return None
    hub = config.JupyterHub
    extra = None
    if JupyterHub.class_traits().get("extra_user_scopes") is not None:  # JupyterHub 6
        extra = _value(hub.get("extra_user_scopes"), set())  # a set: .append does nothing
    return held_by_users(_value(hub.get("load_roles"), []), extra_user_scopes=extra)


def _authenticator_not_found(error: AuthenticatorNotFound) -> Problem:
    """The authenticator the file names is not installed: the hub would not start either."""
    return Problem(
        "JupyterHub.authenticator_class",
        _line(error),
        "install the authenticator's package in the hub's environment, or name one of the "
        'installed entry points (`with_token_cache("dummy")` to try things out)',
    )


def _settings(config: Config) -> tuple[TokenCache, list[Problem]]:
    """A TokenCache with each setting of ``config`` applied alone, so every bad one is named.

    The base class's section first, then TokenCache's own, as traitlets applies them.
    """
    cache = TokenCache()
    names = set(cache.trait_names(config=True))
    problems: list[Problem] = []
    for section in ("CacheEngine", "TokenCache"):
        for name, value in config[section].items() if section in config else ():
            setting = f"{section}.{name}"
            if name not in names:
                problems.append(
                    Problem(
                        setting,
                        "is not a TokenCache setting (traitlets would ignore it)",
                        "fix its name; `jupyter-token-cache generate-config` lists them all",
                    )
                )
                continue
            try:
                setattr(cache, name, _value(value, getattr(cache, name)))
            except TraitError as e:
                message = "has a value of the wrong type" if name in SECRET_SETTINGS else _line(e)
                problems.append(Problem(setting, message, f"see `{setting}` in generate-config"))
    return cache, problems


def _storage(cache: TokenCache, config: Config, timeout: float) -> list[Problem]:
    """The encryption key, the backend's settings, and one call to a shared backend."""
    configured = "encryption_key" in config.TokenCache or "encryption_key" in config.CacheEngine
    where = "TokenCache.encryption_key" if configured else "JUPYTERHUB_CRYPT_KEY"
    try:
        parse_keys(cache.encryption_key)
    except (EncryptionKeyError, ValueError):
        return [
            Problem(
                where,
                "is malformed: each key is 32 bytes, hex- or base64-encoded (several are "
                "separated by ';')",
                "generate one with `openssl rand -hex 32`",
            )
        ]
    try:
        store = cache.store
    except TokenCacheConfigError as e:
        fix = e.fix or "see TokenCache.backend and TokenCache.url in generate-config"
        return [Problem("TokenCache.backend", str(e), fix)]
    if not isinstance(store, SharedStore):
        return []
    found = asyncio.run(_ping(store, cache.namespace, timeout))
    if found is None:
        return []
    reason, fix = found
    return [
        Problem(
            "TokenCache.url",
            f"the {cache.backend} server at {_location(cache.url)} does not answer: {reason}",
            fix,
        )
    ]


#: The fix when the backend is not there, and when it refuses our credentials (it answers:
#: starting it is no fix).
_START_FIX = "start it, or fix TokenCache.url (the hub then serves every request as a miss)"
_CREDENTIALS_FIX = (
    "fix the password (and user) in TokenCache.url, redis://[user]:PASSWORD@host:port/db, "
    "to the server's requirepass or ACL user (the hub then serves every request as a miss)"
)


async def _ping(store: SharedStore, namespace: str, timeout: float) -> tuple[str, str] | None:
    """Why one read-only call to the backend failed and what fixes it, or None when it answered."""
    try:
        await asyncio.wait_for(store.backend.exists(f"{namespace}:g"), timeout)
    except asyncio.TimeoutError:
        return f"no answer within {timeout:g} s", _START_FIX
    except Exception as e:  # noqa: BLE001 - whatever the client raises is the finding
        reason = f"{type(e).__name__}: {_line(e)}"
        refused = "Authentication" in type(e).__name__ or "NOAUTH" in reason
        return reason, _CREDENTIALS_FIX if refused else _START_FIX
    finally:
        try:
            await close_all()
        except Exception:  # noqa: BLE001, S110 - closing a client that never connected
            pass
    return None


def _location(url: str) -> str:
    """``host:port`` of a backend URL (each of them for Sentinel and Cluster): never its
    password."""
    if not url:
        return "its default address"
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or url


def _value(value: Any, initial: Any) -> Any:
    """A config value as traitlets would apply it (``c.X.y.update(...)`` is lazy)."""
    if isinstance(value, LazyConfigValue):
        return value.get_value(initial)
    return initial if value is None else value


def _line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class GenerateConfigCommand(Command):
    """Every setting with its default and help, commented, as ``jupyterhub --generate-config``."""

    name = "jupyter-token-cache generate-config"
    description = """Print every token cache setting with its default and help,
    commented out, for jupyterhub_config.py (TokenCache) and for services that check
    tokens (CachedTokenChecks, AnswerCache). -f FILE writes a file instead; an existing
    file is kept unless --force. With --json: each setting's default and help as JSON."""

    output = Unicode("", config=True, help="Write to this file instead of stdout.")
    force = Bool(False, config=True, help="Overwrite the --output file if it exists.")

    aliases = {"f": "GenerateConfigCommand.output", "output": "GenerateConfigCommand.output"}
    flags = {
        **Command.flags,
        "force": ({"GenerateConfigCommand": {"force": True}}, "Overwrite an existing file."),
    }

    def run(self) -> int:
        text = self.settings_json() if self.json_output else self.config_file()
        if not self.output:
            self.out(text)
            return OK
        path = Path(self.output)
        if path.exists() and not self.force:
            raise CommandError(f"{path} exists: pass --force to overwrite it", FAILED)
        try:
            path.write_text(text + "\n")
        except OSError as e:
            raise CommandError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None
        warn(f"wrote {path}")
        return OK

    def config_file(self) -> str:
        lines = [
            "# Configuration of jupyter-token-cache: every setting, with its default.",
            "# Uncomment and change what you need; check the result with",
            "#     jupyter-token-cache check-config jupyterhub_config.py",
            "",
            "c = get_config()  # noqa",
        ]
        for heading, classes in SECTIONS:
            lines += ["", "#" + "=" * 78, f"# {heading}", "#" + "=" * 78, ""]
            lines += [config_section(cls) for cls in classes]
        return "\n".join(lines)

    def settings_json(self) -> str:
        found: dict[str, dict[str, Any]] = {}
        for _, classes in SECTIONS:
            for cls in classes:
                found[cls.__name__] = {
                    name: {"default": default, "help": " ".join((trait.help or "").split())}
                    for name, trait, default in settings_of(cls)
                }
        return json.dumps(found, indent=2)


def settings_of(cls: type[Configurable]) -> list[tuple[str, TraitType[Any, Any], str]]:
    """``(name, trait, default as Python source)`` of each setting of ``cls``, inherited too.

    Notes
    -----
    Defaults are read from an instance, not from the class as traitlets'
    ``class_config_section`` does: a default computed by a ``@default`` method
    (AnswerCache's namespace) would otherwise show as its base class's. The one
    default read from the environment (the encryption key) is named, never shown.
    """
    instance = cls()
    found = []
    for name, trait in sorted(cls.class_traits(config=True).items()):
        if name == "encryption_key":
            default = "''  # default: $JUPYTERHUB_CRYPT_KEY"
        else:
            default = repr(getattr(instance, name))
        found.append((name, trait, default))
    return found


def config_section(cls: type[Configurable]) -> str:
    """``cls``'s settings, commented out, each under its help (``c.TokenCache.url``, not
    ``c.CacheEngine.url``, which would configure AnswerCache as well)."""
    lines = ["#" + "-" * 78, f"# {cls.__name__}", "#" + "-" * 78]
    for name, trait, default in settings_of(cls):
        text = " ".join((trait.help or "").split())
        if isinstance(trait, Enum):
            text += f" Choices: {', '.join(map(repr, trait.values or ()))}."
        wrapped = textwrap.wrap(text, 76, break_on_hyphens=False) or [""]
        lines += ["", f"## {wrapped[0]}", *(f"#  {line}" for line in wrapped[1:])]
        lines.append(f"# c.{cls.__name__}.{name} = {default}")
    return "\n".join(lines) + "\n"
