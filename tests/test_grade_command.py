"""`python -m vllm_course grade EXERCISE`: nbgrader's own steps, one command, real kernels and vLLM.

A temporary copy of the course holds only nbgrader_config.py and solutions/ (no release, no
gradebook), so the command must run generate_assignment itself. Students of exercise 1.6.1, named
by state:

    part1     the release with Part 1 answered                    -> exactly Part 1's points
    broken    a file that is not a notebook                       -> an error row; the others still graded
    endless   Part 1 answered, an endless loop in the last answer cell, graded with a 30 s cell limit
              (Part 1's graded cells need more than 5 s) -> that cell interrupted, the cells after it
              still run, Part 1 still scored
    stuck     the same endless loop, with a 20 s limit per student   -> killed with its kernels, reported

The copy and its environment come from test_nbgrader_pipeline.course_copy (a course home and a hub
port of its own). The unanswered release scoring zero is test_nbgrader_pipeline's.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from test_nbgrader_pipeline import (course_copy, grade_cells, grading_env, endless_loop_submission, last_code_answer,
                                    notebook_name, part1_submission, parts)

from vllm_course import grade_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXERCISE = "ex1_download_and_cache"


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course copy with the students' notebooks in grading/submitted/, and a course home of its own."""
    base = tmp_path_factory.mktemp("grade-command")
    root, _ = course_copy(base, [EXERCISE])
    release = nbformat.read(str(ROOT / "notebooks" / EXERCISE / notebook_name(EXERCISE)), 4)
    solution = nbformat.read(str(root / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4)
    notebooks = {"part1": part1_submission(solution, release), "endless": endless_loop_submission(solution, release),
                 "stuck": endless_loop_submission(solution, release)}
    for student, nb in notebooks.items():
        _submitted(root, student).parent.mkdir(parents=True)
        nbformat.write(nb, str(_submitted(root, student)))
    _submitted(root, "broken").parent.mkdir(parents=True)
    _submitted(root, "broken").write_text("this is not a notebook")
    yield root
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def graded(course: Path) -> subprocess.CompletedProcess:
    """The command, as an instructor runs it, for two students (endless and stuck have their own runs)."""
    env = _env(course)
    done = subprocess.run([sys.executable, "-m", "vllm_course", "grade", EXERCISE, "--student", "part1",
                           "--student", "broken"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=1800)
    print(done.stdout[-3000:], done.stderr[-3000:])
    return done


def _env(course: Path) -> dict[str, str]:
    return grading_env(course.parent / "home")


def _submitted(root: Path, student: str) -> Path:
    return root / "grading" / "submitted" / student / EXERCISE / notebook_name(EXERCISE)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["student_id"]: r for r in csv.DictReader(fh) if r["assignment"] == EXERCISE}


class TestOneCommand:
    def test_does_it_print_every_student_with_score_max_and_seconds(self, graded):
        """Does the summary list each student's score, the maximum and the seconds graded, and flag the broken one?"""
        solution = nbformat.read(str(ROOT / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4)
        total, (_, part1_points, _) = sum(grade_cells(solution).values()), parts(solution)[0]
        lines = {line.split()[0]: line.split() for line in graded.stdout.splitlines() if line.split()}
        assert lines["part1"][1:3] == [f"{part1_points:g}", f"{total:g}"], graded.stdout
        assert "autograde exited" in " ".join(lines["broken"]), graded.stdout
        assert float(lines["part1"][3]) > 0
        assert "steps: generate_assignment, autograde, export, generate_feedback" in graded.stdout
        assert graded.returncode == 1, "a failed student should make the command's exit status 1"

    def test_does_it_export_the_gradebook_scores_to_csv(self, graded, course):
        """Does grading/grades.csv hold each graded student's gradebook score?"""
        rows = _rows(course / "grading" / "grades.csv")
        assert 0 < float(rows["part1"]["score"]) < float(rows["part1"]["max_score"])
        assert "broken" not in rows or float(rows["broken"]["score"]) == 0

    def test_does_it_write_feedback_for_the_graded_students_only(self, graded, course):
        """Is there feedback HTML for the graded student, and none for the broken file?"""
        name = notebook_name(EXERCISE).replace(".ipynb", ".html")
        assert (course / "grading" / "feedback" / "part1" / EXERCISE / name).is_file()
        assert not (course / "grading" / "feedback" / "broken").exists()


class TestOneStudentCannotStopTheOthers:
    def test_is_an_endless_cell_interrupted_and_the_rest_run(self, graded, course, monkeypatch):
        """With --cell-timeout 30, is the looping cell interrupted, every later cell run, and Part 1 still scored?"""
        _private_home(monkeypatch, course)
        run = grade_cli.grade(EXERCISE, course, students=["endless"], cell_timeout=30, progress=False)
        [endless] = run.grades
        assert endless.ok and endless.score is not None, run.table()
        nb = nbformat.read(str(course / "grading" / "autograded" / "endless" / EXERCISE / notebook_name(EXERCISE)), 4)
        loop = last_code_answer(nb)
        assert any(o.output_type == "error" and o.ename in ("CellTimeoutError", "KeyboardInterrupt")
                   for o in loop.outputs), loop.outputs
        after = nb.cells[nb.cells.index(loop) + 1:]
        assert all(c.execution_count for c in after if c.cell_type == "code"), "cells after the loop did not run"
        assert endless.score == parts(nbformat.read(str(course / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4))[0][1]

    def test_is_a_student_past_the_limit_killed_with_its_kernels(self, graded, course, monkeypatch):
        """Is a student's autograde that outlives --student-timeout killed, kernels included, and reported?"""
        _private_home(monkeypatch, course)
        before = _kernels_in(course)
        run = grade_cli.grade(EXERCISE, course, students=["stuck"], student_timeout=20, progress=False)
        [stuck] = run.grades
        assert "killed after 20 s" in stuck.error, run.table()
        assert stuck.seconds < 60, run.table()
        assert _kernels_in(course) <= before, "a kernel of the killed autograde is still running"


def _private_home(monkeypatch: pytest.MonkeyPatch, course: Path) -> None:
    monkeypatch.setenv("VLLM_COURSE_HOME", str(course.parent / "home"))
    monkeypatch.setenv("VLLM_COURSE_HUB_PORT", str(grade_cli._free_port()))


def _kernels_in(course: Path) -> set[int]:
    """pids of kernels whose working folder lies in the course copy."""
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "ipykernel_launcher" in " ".join(p.info["cmdline"] or []) and str(course) in p.cwd():
                found.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
