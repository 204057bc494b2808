"""Console plumbing: keep a library's output out of a notebook cell (and keep it), and print text tables. `captured()`
covers `sys.stdout`/`sys.stderr`, logging handlers' own streams, fds 1 and 2 and Jupyter widgets."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Collection, Iterator, Sequence
from typing import Any


def table(rows: Sequence[Sequence[str]], *, right: Collection[int] = ()) -> str:
    """Rows of cells as columns two spaces apart, left-aligned but for the column indexes in `right`."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return "\n".join("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows)


class Captured:
    """The text written to the console during a `captured()` block (filled in when it ends)."""

    text = ""


@contextlib.contextmanager
def captured(skip_loggers: str = "") -> Iterator[Captured]:
    """Keep fds 1 and 2 in a temporary file for the block; drop Python's streams and console log handlers
    (but those of loggers whose name starts with `skip_loggers`)."""
    box = Captured()
    with tempfile.TemporaryFile(mode="w+b") as sink, open(os.devnull, "w") as null:
        consoles = (sys.stdout, sys.stderr)  # before the redirect replaces them
        try:
            with fds_to(sink.fileno()), contextlib.redirect_stdout(null), contextlib.redirect_stderr(null), \
                    _console_handlers_muted(consoles, null, skip_loggers), _displays_dropped():
                yield box
        finally:  # also when the block raises: the text is what explains the error
            sink.seek(0)
            box.text = sink.read().decode("utf-8", "replace")


@contextlib.contextmanager
def fds_to(fileno: int, fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Point file descriptors `fds` (default stdout and stderr) at `fileno` for the block: what C code writes too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    try:
        for fd in fds:
            os.dup2(fileno, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _displays_dropped() -> contextlib.AbstractContextManager[Any]:
    """In a Jupyter kernel, drop rich displays for the block: tqdm.auto draws its bars as widgets."""
    if "IPython" not in sys.modules or sys.modules["IPython"].get_ipython() is None:
        return contextlib.nullcontext()
    from IPython.utils.capture import capture_output
    return capture_output(stdout=False, stderr=False, display=True)


@contextlib.contextmanager
def _console_handlers_muted(consoles: tuple[Any, ...], null: Any, skip_loggers: str) -> Iterator[None]:
    """Point console logging handlers at nothing for the block: torch's `StreamHandler(sys.stderr)`,
    made at import, keeps the kernel's stream and bypasses both redirects."""
    loggers = [logging.getLogger()] + [logger for name, logger in list(logging.Logger.manager.loggerDict.items())
                                       if isinstance(logger, logging.Logger)
                                       and not (skip_loggers and name.startswith(skip_loggers))]
    swapped = [(handler, handler.setStream(null)) for logger in loggers for handler in logger.handlers
               if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
               and any(handler.stream is c for c in consoles)]
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
