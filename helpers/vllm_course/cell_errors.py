"""The notebook's exception handler (`setup()` registers it): a failed vLLM / huggingface_hub call explained.

Its traceback is cut to the learner's line and the library line that raised, plus `diagnose.advise`'s line; the cell
still fails and `%tb` / `%debug` see the whole exception. Anything else gets IPython's normal display."""

from __future__ import annotations

import sys
import types
from typing import Any

_MARK = "_vllm_course_cell_errors"  # set on the shell while this handler is registered
_CALLED = ("vllm", "huggingface_hub", "vllm_course.engine")  # what a learner's direct call enters


def register(shell: Any = None) -> bool:
    """Install the handler in this IPython kernel (again: replaced); False outside IPython or if another is set."""
    if shell is None and "IPython" in sys.modules:
        from IPython import get_ipython
        shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if shell.custom_exceptions and not getattr(shell, _MARK, False):
        return False
    shell.set_custom_exc((Exception,), _handle)
    setattr(shell, _MARK, True)
    return True


def _handle(shell: Any, etype: type, value: BaseException, tb: types.TracebackType | None,
            tb_offset: int | None = None) -> None:
    """IPython's CustomTB: shortened traceback plus advice, or IPython's normal display."""
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # %tb and %debug see it all
    if sys.version_info >= (3, 12):
        sys.last_exc = value
    try:
        stb = _explained(shell, etype, value, tb)
    except Exception:  # noqa: BLE001 - never let the advice hide the learner's error
        stb = None
    if stb is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, running_compiled_code=True)
    else:
        shell._showtraceback(etype, value, stb)


def _explained(shell: Any, etype: type, value: BaseException, tb: types.TracebackType | None) -> list[str] | None:
    """The structured traceback to show, or None when IPython's own should be shown."""
    from .diagnose import advise
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    learner = _learner_call(shell, entries)
    if learner is None or entries[-1] is learner or (course_error := advise(value)) is None:
        return None
    raised = entries[-1]
    hidden = entries.index(raised) - entries.index(learner) - 1
    short = types.TracebackType(types.TracebackType(None, raised.tb_frame, raised.tb_lasti, raised.tb_lineno),
                                learner.tb_frame, learner.tb_lasti, learner.tb_lineno)
    formatter = shell.InteractiveTB
    advice = f"vllm_course: {course_error}"
    if getattr(formatter, "mode", "") == "Minimal":  # nbgrader's autograde runs kernels with xmode=Minimal
        return [*formatter.get_exception_only(etype, value), advice]
    (whole,) = formatter.format_exception_as_a_whole(etype, value, short, 5, 0)
    split = len(whole) - len(formatter.format_exception(etype, value))  # header + frames | "Type: message", notes
    head, frames, exception = whole[0], whole[1:split], whole[split:]
    if hidden:
        frames.insert(1, f"    [... {hidden} library frame{'s' * (hidden != 1)} hidden by vllm_course: "
                         "%tb shows them all]\n")
    return ["-" * 75, head, *frames, *exception, advice]


def _learner_call(shell: Any, entries: list[types.TracebackType]) -> types.TracebackType | None:
    """The last frame of the learner's code (a cell) that called straight into vLLM or huggingface_hub."""
    for here, callee in reversed(list(zip(entries, entries[1:]))):
        if here.tb_frame.f_globals is shell.user_global_ns:
            module = str(callee.tb_frame.f_globals.get("__name__", ""))
            return here if any(module == name or module.startswith(name + ".") for name in _CALLED) else None
    return None
