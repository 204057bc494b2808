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
