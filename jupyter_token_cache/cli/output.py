"""What the command prints for people goes through :func:`visible`, once per value."""

from __future__ import annotations


def visible(value: object) -> str:
    """``str(value)`` with each control character written as its escape (``\\n``, ``\\x1b``).

    Notes
    -----
    The command prints what others wrote: user and service names, the hub's messages, a
    config file's setting names. A name holding a newline would forge a whole line of a
    table or of the event log, and one holding ESC would send terminal escape codes to
    the operator's terminal. So every value printed for people (tables, event lines,
    problems, errors) passes through here, each value on its own before it is joined
    into a line; :meth:`Command.out` and ``warn`` pass each line through again. Printable
    text, non-ASCII letters included, is left as it is, and the function is idempotent
    (an escape holds no control character), so a value passing twice is shown once.
    ``--json`` output is JSON, whose encoder escapes control characters itself.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
