"""Course links: the start-here map names every lesson and exercise, and relative links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
START = NOTEBOOKS / "00_start_here.ipynb"
# Notebooks whose relative links are checked (the start page and the lessons that link back to it).
CHECKED = (START, NOTEBOOKS / "lessons" / "01_hub_integration_and_naming.ipynb",
           NOTEBOOKS / "lessons" / "02_cache_configuration.ipynb")
LESSONS = ("01_hub_integration_and_naming", "02_cache_configuration", "03_cache_management", "04_weight_formats",
           "05_local_and_custom_models", "06_quantized_models", "07_offline_loading", "08_storage_management")
EXERCISES = ("ex1_download_and_cache", "ex2_offline_setup", "ex3_gptq_vs_fp16")


def _links(notebook: Path) -> list[str]:
    text = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "markdown")
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in target]


def test_does_the_map_link_every_lesson_and_exercise():
    """Does 00_start_here link each of the eight lessons and the three exercise folders?"""
    links = set(_links(START))
    assert {f"lessons/{name}.ipynb" for name in LESSONS} <= links
    assert {f"{name}/" for name in EXERCISES} <= links


@pytest.mark.parametrize("notebook,target", [(nb, t) for nb in CHECKED for t in sorted(set(_links(nb)))],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_does_each_relative_link_resolve(notebook, target):
    """Does this relative link point at a notebook, or a folder holding one, that exists?"""
    path = (notebook.parent / target).resolve()
    assert path.exists(), f"{notebook.name} links {target}, but {path} does not exist"
    if target.endswith("/"):
        assert list(path.glob("*.ipynb")), f"{notebook.name} links {target}, which holds no notebook"


# --- Stated times: every notebook opens with one Time line; the core path fits the module's 2 hours. ---

ROOT = NOTEBOOKS.parent
WORDS_PER_MINUTE = 200           # the reading rule README.md states
DEEP_DIVE = "Deep dive (optional)"
TIME = re.compile(
    r"^\*\*Time:\*\* ~(?P<core>\d+) min(?: core, ~(?P<full>\d+) min with deep dives)? "
    r"\(reading ~(?P<read>\d+)(?: / ~(?P<read_full>\d+))? min,(?: answers ~(?P<answers>\d+) min,)? "
    r"running ~(?P<run>\d+) (?P<unit>s|min) on a 2-core CPU\) · \*\*(?P<kind>Core path|Optional deep dive|Exercise)\*\*$",
    re.M)
# Every lesson notebook there is (not only LESSONS): a new one must state its time too.
LESSON_NOTEBOOKS = (START, *sorted((NOTEBOOKS / "lessons").glob("*.ipynb")))
EXERCISE_NOTEBOOKS = tuple(next((NOTEBOOKS / name).glob("*.ipynb")) for name in EXERCISES)


def _stated(notebook: Path) -> dict:
    """The Time line of the notebook's first markdown cell, parsed; fails if there is none."""
    cells = nbformat.read(notebook, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "markdown")
    found = TIME.search(first.source)
    assert found, f"{notebook.name}: its first markdown cell has no Time line in the format README.md gives"
    return {k: (int(v) if v and v.isdigit() else v) for k, v in found.groupdict().items()}


def _markdown_words(notebook: Path) -> tuple[int, int]:
    """(core, deep-dive) words of the markdown, Time line left out; a deep dive runs to the next heading of its level or above."""
    core = deep = 0
    level = None
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        for line in TIME.sub("", cell.source).splitlines():
            heading = re.match(r"^(#{1,6}) (.*)$", line)
            if heading:
                if level is not None and len(heading.group(1)) <= level:
                    level = None
                if level is None and heading.group(2).startswith(DEEP_DIVE):
                    level = len(heading.group(1))
            if level is None:
                core += len(line.split())
            else:
                deep += len(line.split())
    return core, deep


def _seconds(stated: dict) -> int:
    return stated["run"] * (60 if stated["unit"] == "min" else 1)


@pytest.mark.parametrize("notebook", LESSON_NOTEBOOKS + EXERCISE_NOTEBOOKS, ids=lambda p: p.stem)
def test_does_every_notebook_state_a_time_that_follows_the_rule(notebook):
    """Does the Time line's reading match the markdown's words at 200/min (±1), and its total reading + running?"""
    stated = _stated(notebook)
    core, deep = _markdown_words(notebook)
    kinds = {"Exercise"} if notebook in EXERCISE_NOTEBOOKS else {"Core path", "Optional deep dive"}
    assert stated["kind"] in kinds, f"{notebook.name} says {stated['kind']!r}, expected one of {kinds}"
    assert abs(stated["read"] - core / WORDS_PER_MINUTE) <= 1, (
        f"{notebook.name}: reading ~{stated['read']} min stated, its core markdown is {core} words "
        f"= {core / WORDS_PER_MINUTE:.1f} min: re-stamp the Time line")
    extra = stated["answers"] or 0
    assert stated["core"] >= stated["read"] + extra - 1 + _seconds(stated) / 60, "total below reading + answers + running"
    assert (stated["full"] is not None) == (deep > 0), f"{notebook.name}: 'with deep dives' iff it has a {DEEP_DIVE} section"
    if deep:
        assert abs(stated["read_full"] - (core + deep) / WORDS_PER_MINUTE) <= 1
        assert stated["full"] > stated["core"] - 1


@pytest.mark.parametrize("exercise", EXERCISES)
def test_does_the_release_state_the_time_its_source_states(exercise):
    """nbgrader generates the release from solutions/: do both carry the same Time line?"""
    release = next((NOTEBOOKS / exercise).glob("*.ipynb"))
    assert _stated(release) == _stated(ROOT / "solutions" / exercise / release.name)


def _core_path() -> dict[str, int]:
    """The core time of each notebook on the core path (optional notebooks are not)."""
    return {p.stem: s["core"] for p in LESSON_NOTEBOOKS if (s := _stated(p))["kind"] == "Core path"}


def test_does_the_core_path_fit_in_an_hour_and_the_module_in_two():
    """Do the core times of 00 and the core lessons add up to <= 60 min, and with the exercises to <= 120?"""
    core = _core_path()
    assert {START.stem, *LESSONS} <= set(core), "00 and lessons 01-08 are the core path (the six objectives)"
    exercises = sum(_stated(p)["core"] for p in EXERCISE_NOTEBOOKS)
    assert sum(core.values()) <= 60, core
    assert sum(core.values()) + exercises <= 120, (sum(core.values()), exercises)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_does_each_exercise_take_at_most_20_minutes(exercise):
    """Does the exercise state <= 20 min for a learner who did the core path?"""
    assert _stated(next((NOTEBOOKS / exercise).glob("*.ipynb")))["core"] <= 20


def test_does_the_readme_course_map_agree_with_the_notebooks():
    """Does README.md's course map list every notebook with the times the notebook states?"""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Course map"):]
    rows = {link: time for link, time in re.findall(r"\]\(([^)]+)\) \|.*\| (~[^|]*min) \|$", section, re.M)}
    for notebook in LESSON_NOTEBOOKS + EXERCISE_NOTEBOOKS:
        rel = notebook.relative_to(ROOT).as_posix()
        link = rel if notebook in LESSON_NOTEBOOKS else rel.rsplit("/", 1)[0] + "/"
        stated = _stated(notebook)
        want = f"~{stated['core']} / ~{stated['full']} min" if stated["full"] else f"~{stated['core']} min"
        assert rows.get(link) == want, f"README's course map says {rows.get(link)!r} for {link}, the notebook {want!r}"
    core = sum(_core_path().values())
    exercises = sum(_stated(p)["core"] for p in EXERCISE_NOTEBOOKS)
    assert f"lessons' core ~{core} min + exercises ~{exercises} min = ~{core + exercises} min" in section
