"""Run a documentation page as an operator follows it, block by block, with Sybil.

Sybil parses each page (MyST Markdown, or GitHub Markdown for README.md) into its fenced
blocks and the comments that steer them, in page order; this module says what each
kind of block means:

- A Python block that sets ``c.…`` is **configuration**: it is added to the page's
  ``jupyterhub_config.py`` (or to the file its first line names, ``# /etc/…/x.py``) in
  page order, as an operator pastes it. The composed file is loaded with JupyterHub's own
  config loader (``PyFileConfigLoader``, as ``jupyterhub -f`` loads it), a hub (MockHub)
  starts with it, and the hub must start without a token-cache warning and
  ``jupyter-token-cache check-config`` must find no problem in the file.
- Any other Python block is **code**: it runs in the page's namespace (top-level
  ``await`` allowed, as in a notebook cell).
- A ``console`` block's ``$`` lines and a ``bash`` block's lines are **shell**: they run
  in bash in the page's scratch directory, with the environment earlier blocks exported;
  the output a ``console`` block shows is compared with the real output (numbers, ids and
  times aside; a ``...`` line stands for any lines).
- A block that cannot run here is preceded by ``% skip: next "why"`` (``<!-- skip: next
  "why" -->`` in README.md): Sybil's own skip, with the reason next to the block.
- ``% docs-test: alternative`` before a configuration block: it replaces the page's
  configuration so far (another backend) instead of adding to it; each alternative
  starts its own hub. ``% docs-test: answer NAME``: the JSON block that follows is an
  answer the page shows; the test makes the same request (``ANSWERS`` in
  test_pages.py) and compares the two. ``% docs-test: abridged "why"``: the console
  output that follows is a sample, not compared: its command must succeed, and the
  page says why.

What a page names that only exists on the operator's machine (Redis on 6379, the hub
on 8081, /etc/jupyterhub) is replaced by this machine's equivalent (``substitutions``);
the replacements are listed in test_pages.py.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import shutil
import subprocess
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import SkipTest

from sybil import Document, Example, Region
from sybil.evaluators.skip import Skipper
from sybil.parsers.abstract.lexers import LexerCollection
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer
from sybil.parsers.myst.lexers import DirectiveInPercentCommentLexer
from sybil.parsers.myst.skip import SkipParser
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[2]

#: Configuration an operator's file already holds when a page adds to it without
#: choosing an authenticator (backends, the exchange): the quick start's first line.
BASE_CONFIG = """\
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
"""

BASH = shutil.which("bash") or "/bin/bash"
CONFIG_LINE = re.compile(r"^c\.\w|get_config\(\)", re.M)
FILE_LINE = re.compile(r"\A#\s*(\S+\.py)\b")


@dataclass
class Outcome:
    """What became of one block: ``ran`` (how), or not runnable and why."""

    line: int
    language: str
    ran: str = ""
    reason: str = ""


@dataclass
class Composition:
    """The configuration files a page composes, in page order (one per alternative)."""

    files: dict[str, list[str]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    #: The answers the page shows of this configuration's hub: (line, name, answer).
    answers: list[tuple[int, str, Any]] = field(default_factory=list)

    def add(self, name: str, source: str, line: int) -> None:
        self.files.setdefault(name, []).append(source)
        self.lines.append(line)


class Marker:
    """``% docs-test: ACTION [ARGUMENT]``: how the next block is tested."""

    def __init__(self, page: PageRun) -> None:
        self.page = page

    def __call__(self, example: Example) -> None:
        action, _, argument = (example.parsed or "").strip().partition(" ")
        if action not in ("alternative", "answer", "abridged"):
            raise ValueError(f"unknown docs-test action {action!r}")
        if action == "abridged" and not argument.strip('" '):
            raise ValueError('say why the output is abridged: % docs-test: abridged "why"')
        self.page.marker = (action, argument.strip().strip('"'))


def marker_parser(document: Document) -> Iterable[Region]:
    lexers = LexerCollection(
        [DirectiveInPercentCommentLexer("docs-test"), DirectiveInHTMLCommentLexer("docs-test")]
    )
    for region in lexers(document):
        region.parsed = region.lexemes["arguments"]
        region.evaluator = document.namespace["page"].marker_evaluator
        yield region


def block_parser(document: Document) -> Iterable[Region]:
    """Every fenced block with a language (MyST directives, ``{…}``, are not examples)."""
    for region in FencedCodeBlockLexer(r"[\w+-]+")(document):
        region.parsed = (region.lexemes["language"], str(region.lexemes["source"]))
        region.evaluator = document.namespace["page"].evaluate
        yield region


class PageRun:
    """One page, run in order; ``outcomes`` says what became of each block."""

    def __init__(
        self,
        path: Path,
        *,
        scratch: Path,
        env: dict[str, str],
        substitutions: Callable[[str], str],
        hub_starter: Callable[[Config], Any],
        answers: dict[str, Callable[[Any], Any]],
    ) -> None:
        self.path = path
        self.scratch = scratch
        self.env = env
        self.substitute = substitutions
        self.hub_starter = hub_starter
        self.answers = answers
        self.outcomes: list[Outcome] = []
        self.compositions: list[Composition] = [Composition()]
        self.started: list[tuple[int, Any]] = []  # (blocks composed, hub) per start
        self.hub: Any = None
        self.marker: tuple[str, str] | None = None
        self.marker_evaluator = Marker(self)
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.document = Document(path.read_text(), str(path))
        self.document.namespace["page"] = self  # before parsing: the parsers bind to it
        for parser in (SkipParser(), marker_parser, block_parser):
            for region in parser(self.document):
                self.document.add(region)

    # -- running ------------------------------------------------------------------

    def examples(self) -> list[Example]:
        """The page's examples, in page order; every skip must say why."""
        examples = list(self.document.examples())
        for example in examples:
            if isinstance(example.region.evaluator, Skipper):
                action, reason = example.parsed
                if action in ("next", "start") and not (reason or "").strip('" '):
                    raise AssertionError(f'{self.where(example)}: say why: skip: {action} "why"')
        return examples

    def run(self, example: Example) -> None:
        """Evaluate one example; a block skipped by ``% skip`` is recorded with its reason."""
        try:
            example.evaluate()
        except SkipTest as e:
            language, _ = example.parsed
            reason = str(e).strip()
            if not reason:
                raise AssertionError(f"{self.where(example)}: a skip must say why") from None
            self.outcomes.append(Outcome(example.line, language, reason=reason))
            self.marker = None

    def where(self, example: Example | int) -> str:
        line = example if isinstance(example, int) else example.line
        return f"{self.path.relative_to(ROOT)}:{line}"

    def evaluate(self, example: Example) -> None:
        language, source = example.parsed
        marker, self.marker = self.marker, None
        how = {
            "python": self.python,
            "console": self.console,
            "bash": self.bash,
            "json": self.answer,
            "text": self.answer,
        }.get(language)
        if how is None:
            raise AssertionError(
                f"{self.where(example)}: a {language} block is neither run nor marked "
                f'% skip: next "why"'
            )
        try:
            ran = how(example, source, marker)
        except AssertionError:
            raise
        except Exception as e:
            raise AssertionError(
                f"{self.where(example)}: the {language} block fails:\n{traceback.format_exc()}"
            ) from e
        self.outcomes.append(Outcome(example.line, language, ran=ran))

    # -- Python ---------------------------------------------------------------------

    def python(self, example: Example, source: str, marker: tuple[str, str] | None) -> str:
        match = FILE_LINE.match(source)  # the file the page names, as it names it
        source = self.substitute(source)
        if CONFIG_LINE.search(source) and not re.search(r"^c = Config\(\)", source, re.M):
            compile(source, self.where(example), "exec")
            if marker and marker[0] == "alternative":
                self.compositions.append(Composition())
            name = self.substitute(match.group(1)) if match else "jupyterhub_config.py"
            self.compositions[-1].add(name, source, example.line)
            return "configuration"
        code = compile(source, self.where(example), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        os.environ.update(self.env)
        result = eval(code, self.namespace)  # noqa: S307 - the documentation's own code
        if inspect.iscoroutine(result):
            asyncio.run(cell(result))
        return "code"

    # -- shell ----------------------------------------------------------------------

    def shell(self, command: str) -> tuple[int, str]:
        """Run ``command`` in bash in the scratch directory; keep what it exports."""
        saved = self.scratch / ".env"
        script = f"{command}\n__status=$?\nenv -0 > {saved}\nexit $__status\n"
        done = subprocess.run(
            [BASH, "-c", script],
            cwd=self.scratch,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if saved.exists():
            pairs = (item.split("=", 1) for item in saved.read_text().split("\0") if "=" in item)
            self.env.clear()
            self.env.update(pairs)
            saved.unlink()
        return done.returncode, done.stdout + done.stderr

    def console(self, example: Example, source: str, marker: tuple[str, str] | None) -> str:
        """``$ command`` lines (a trailing ``\\`` continues one), each followed by its output."""
        self.ensure_hub_if_named(source)
        if self.compositions[-1].files:  # the file a command is given is the page's so far
            self.config_files(self.compositions[-1])
        commands: list[tuple[str, list[str]]] = []
        for line in self.substitute(source).splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands and commands[-1][0].endswith("\\") and not commands[-1][1]:
                commands[-1] = (commands[-1][0] + "\n" + line, [])
            elif commands:
                commands[-1][1].append(line)
        assert commands, f"{self.where(example)}: a console block without a $ line"
        for command, shown in commands:
            status, output = self.shell(command)
            expect_failure = any(line.startswith("jupyter-token-cache: ") for line in shown)
            if status != 0 and not expect_failure:
                raise AssertionError(
                    f"{self.where(example)}: `{command}` exited with {status}:\n{output}"
                )
            if marker and marker[0] == "abridged":
                continue  # a sample: the command ran, and succeeded
            if shown:
                assert same(output.splitlines(), shown), (
                    f"{self.where(example)}: `{command}` printed\n{output}\nthe page shows\n"
                    + "\n".join(shown)
                )
        return "shell"

    def bash(self, example: Example, source: str, marker: tuple[str, str] | None) -> str:
        self.ensure_hub_if_named(source)
        status, output = self.shell("set -e\n" + self.substitute(source))
        assert status == 0, f"{self.where(example)}: the bash block exited with {status}:\n{output}"
        return "shell"

    def ensure_hub_if_named(self, source: str) -> None:
        """A shell block that talks to the hub needs the page's hub running."""
        if re.search(
            r"127\.0\.0\.1:(8000|8081)|jupyter-token-cache (stats|tokens|reset|events)", source
        ):
            self.ensure_hub()

    # -- answers --------------------------------------------------------------------

    def answer(self, example: Example, source: str, marker: tuple[str, str] | None) -> str:
        if not marker or marker[0] != "answer":
            raise AssertionError(
                f"{self.where(example)}: an answer the page shows is neither compared "
                f'(% docs-test: answer NAME) nor marked % skip: next "why"'
            )
        # compared at the end of the page's configuration: a page shows the answers of the
        # hub it configures, whose configuration may go on after the answer
        self.compositions[-1].answers.append((example.line, marker[1], json.loads(source)))
        return "answer"

    def compare_answers(self, composition: Composition) -> None:
        for line, name, shown in composition.answers:
            real = self.answers[name](self.hub)
            assert shape(shown) == shape(real), (
                f"{self.where(line)}: the page shows\n{json.dumps(shown, indent=1)}\nthe hub "
                f"answers\n{json.dumps(real, indent=1)}"
            )

    # -- the hub --------------------------------------------------------------------

    def config_files(self, composition: Composition) -> Path:
        """Write ``composition``'s files into the scratch directory; the main one's path."""
        for name, sources in composition.files.items():
            path = self.scratch / name  # an absolute name (substituted) stays as it is
            if not path.is_relative_to(self.scratch):
                raise AssertionError(
                    f"{self.path.name} writes {name}, outside its scratch directory"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            text = "\n\n".join(sources)
            if name == "jupyterhub_config.py" and "authenticator_class" not in text:
                text = BASE_CONFIG + "\n" + text
            path.write_text(text + "\n")
        return self.scratch / "jupyterhub_config.py"

    def load(self, composition: Composition) -> Config:
        """The composed file, loaded as ``jupyterhub -f`` loads it."""
        path = self.config_files(composition)
        os.environ.update(self.env)
        return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()

    def ensure_hub(self) -> Any:
        """The page's hub, (re)started when the configuration grew since it started."""
        composition = self.compositions[-1]
        composed = len(composition.lines)
        if self.hub is not None and self.started[-1][0] == composed:
            return self.hub
        assert composition.files, "the page talks to a hub, but configures none"
        self.stop_hub()
        self.hub = self.start(composition)
        self.started.append((composed, self.hub))
        return self.hub

    def start(self, composition: Composition) -> Any:
        """A hub with ``composition``; a failure names the page and the blocks composed."""
        try:
            return self.hub_starter(self.load(composition))
        except Exception as e:
            raise AssertionError(
                f"{self.path.relative_to(ROOT)}: the hub does not start with the configuration "
                f"of the blocks at lines {composition.lines}: {type(e).__name__}: {e}"
            ) from e

    def stop_hub(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None

    def finish_compositions(
        self, check: Callable[..., list[Any]]
    ) -> list[tuple[Composition, list[Any]]]:
        """Start a hub with each composition not yet started in full (at the page's end),
        and ``check`` each composed file (check-config's ``check_config``)."""
        found = []
        for index, composition in enumerate(self.compositions):
            if not composition.files:
                continue
            last = index == len(self.compositions) - 1
            running = self.hub is not None and self.started[-1][0] == len(composition.lines)
            if not (last and running):
                self.stop_hub()
                self.hub = self.start(composition)
                self.started.append((len(composition.lines), self.hub))
            self.compare_answers(composition)
            self.stop_hub()  # first: check-config runs as a process of its own would
            found.append((composition, check(self.config_files(composition), ping_timeout=10)))
        return found


async def cell(coroutine: Awaitable[Any]) -> Any:
    """Await a block's top-level ``await``s as a notebook cell would, on a loop of its own;
    then close the cache stores the block opened there, before that loop ends (a kernel's
    loop would live on; this one does not, and a store is bound to its loop)."""
    from jupyter_token_cache.cache import engine

    before = set(engine._STORES)
    try:
        return await coroutine
    finally:
        for key in set(engine._STORES) - before:
            await engine._STORES.pop(key).close()


#: Values that differ from run to run, and the same in both texts compared.
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\ba\d+\b"), "<id>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
]


def normal(line: str) -> str:
    for pattern, placeholder in VOLATILE:
        line = pattern.sub(placeholder, line)
    return " ".join(line.split())


def same(real: list[str], shown: list[str]) -> bool:
    """Whether the real lines are the shown ones, volatile values aside; a shown ``...``
    line stands for any number of lines."""
    pattern = "".join(
        r"(?:.*\n)*?" if line.strip() == "..." else re.escape(normal(line)) + r"\n"
        for line in shown
    )
    while real and not real[-1].strip():  # a trailing blank line is not shown
        real = real[:-1]
    text = "".join(normal(line) + "\n" for line in real)
    return re.fullmatch(pattern, text) is not None


#: Keys whose values change from answer to answer: compared by type only.
VOLATILE_KEYS = {"exp", "iat", "token_id", "last_event_id", "session_id", "id", "time"}


def shape(value: Any, key: str = "") -> Any:
    """An answer with its volatile values replaced by their type."""
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "<volatile>" if key in VOLATILE_KEYS else value


def page_config(path: Path, substitute: Callable[[str], str] = str) -> str:
    """The ``jupyterhub_config.py`` a page composes (its configuration blocks in page order,
    ``substitute``d), for tests that run it with the real ``jupyterhub`` command."""
    document = Document(path.read_text(), str(path))
    blocks = [str(region.lexemes["source"]) for region in FencedCodeBlockLexer("python")(document)]
    return "\n\n".join(substitute(b) for b in blocks if CONFIG_LINE.search(b)) + "\n"


#: What the pages say to do on JupyterHub 5, which has no ``extra_user_scopes``: the same
#: scopes in a "user" role with "self" (appended to a composed file run on JupyterHub 5).
JUPYTERHUB_5_USER_ROLE = """
# JupyterHub 5: the scopes given to users, in the "user" role (as the pages say)
c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", *sorted(
    c.JupyterHub.extra_user_scopes.get_value(set())
    if hasattr(c.JupyterHub.extra_user_scopes, "get_value") else c.JupyterHub.extra_user_scopes
)]})
"""


def for_this_jupyterhub(config: str) -> str:
    """``config``, plus the pages' JupyterHub 5 instruction when this hub is JupyterHub 5."""
    from jupyterhub.app import JupyterHub

    if "extra_user_scopes" in JupyterHub.class_trait_names():
        return config
    return config + JUPYTERHUB_5_USER_ROLE
