"""How far a long operation has got: the audit, a tick with many due timers, a
reconciliation, an export, a simulation.

A use case that may take long takes an optional `Progress` and calls it as it goes; it
never prints. The command line draws it as a bar on a terminal (`ledger.cli`) and passes
nothing otherwise, so scripts and logs stay quiet.
"""

from __future__ import annotations

from collections.abc import Callable

#: Told `done` of `total` as the work goes; `total` is None while it is not known (the
#: provider's objects are listed page by page; firing a timer may make another due).
Progress = Callable[[int, int | None], None]
