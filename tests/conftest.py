"""Shared fixtures: the built course models and vLLM engines on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vllm_course import config
from vllm_course.build import require


def _built(repo_id: str) -> Path:
    # `make test` builds the models first; run by hand, this fails with "run `make models`".
    return require(repo_id)


@pytest.fixture(scope="session")
def base_model() -> Path:
    return _built(config.BASE_MODEL)


@pytest.fixture(scope="session")
def bin_model() -> Path:
    return _built(config.BIN_MODEL)


@pytest.fixture(scope="session")
def pt_model() -> Path:
    return _built(config.PT_MODEL)


@pytest.fixture(scope="session")
def gptq_model() -> Path:
    return _built(config.GPTQ_MODEL)


@pytest.fixture(scope="session")
def awq_model() -> Path:
    return _built(config.AWQ_MODEL)


@pytest.fixture(scope="session")
def w8a8_model() -> Path:
    return _built(config.W8A8_MODEL)


@pytest.fixture(scope="session")
def quant():
    """What vLLM can run on this machine, probed from its real kernel library (no faked flags)."""
    from vllm_course.machine import quant_support

    return quant_support()


@pytest.fixture(scope="session")
def quantized_model(quant) -> Path:
    """The quantized course model this machine runs: GPTQ (4-bit kernel present) or W8A8."""
    return _built(quant.quantized_model)


@pytest.fixture()
def course_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch VLLM_COURSE_HOME so a test can build or break things without touching the real one."""
    home = tmp_path / "course-home"
    monkeypatch.setenv("VLLM_COURSE_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def vllm_engines():
    """Load, yield, and release engines one at a time (in-process, as lessons do)."""
    from vllm_course import engine

    opened = []

    def load(model: str | Path, **kwargs):
        from vllm import LLM
        with engine.load_report(str(model)) as report:
            llm = LLM(model=str(model), **engine.machine_kwargs(**kwargs))
        opened.append(llm)
        return llm, report.report

    def release_all() -> None:
        while opened:
            engine.release(opened.pop())

    load.release_all = release_all
    yield load
    release_all()


# The files that take longest start first, then the lessons (nbval, 0.5-2 min each), so that `make test`'s two
# xdist workers end close together.
LONGEST_FIRST = ("test_nbgrader_pipeline.py", "test_classroom.py", ".ipynb")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name if item.path.suffix != ".ipynb" else ".ipynb"
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other file keeps its order


_SUMMARY: list[str] = []  # lines a test asked to show, not yet attached to a report


@pytest.fixture(scope="session")
def summary():
    """`summary(lines)`: show these lines (timings, score tables) at the end of pytest's output.

    They travel on the test's report, so they reach the terminal from an xdist worker too."""
    return _SUMMARY.extend


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _SUMMARY:
        report.user_properties.append(("summary", "\n".join(_SUMMARY)))
        _SUMMARY.clear()
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, text in getattr(report, "user_properties", ()):
                if name == "summary":
                    terminalreporter.write_line("")
                    for line in text.splitlines():
                        terminalreporter.write_line(line)


CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def greedy_answer(llm) -> str:
    from vllm import SamplingParams

    out = llm.chat(CHAT, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    return out[0].outputs[0].text


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
