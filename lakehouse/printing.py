"""How the engine reports progress: every long operation takes a ``Printer``, a callable
given one line at a time (``print`` on the command line, a list's ``append`` in tests)."""

from __future__ import annotations

from collections.abc import Callable

Printer = Callable[[str], None]
