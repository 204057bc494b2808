"""Grading throughput: `python -m vllm_course grade` with 1 and 2 workers on one SQLite gradebook.

Run: .venv/bin/python benchmarks/bench_grading.py [--students 4] [--exercise ex1_download_and_cache]
     [--workers 1 2] [--answers ex1-modules]

For each worker count, a fresh temporary copy of the course (nbgrader_config.py and the exercise's
solutions/) gets `--students` copies of one answer set from tests/nbgrader_submissions (default: a
correct one, so every student loads vLLM), and the grade command grades them all. Printed: wall
seconds, students per minute, each student's seconds, and whether every score matches the serial
run and no autograde failed (a locked SQLite gradebook shows up as a failed student or a missing
score). Each worker has its own course home and hub port (the grade command does that). This
machine may be shared and noisy: compare the two rows of one run, and re-run before quoting.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_nbgrader_pipeline import notebook_name, submissions  # noqa: E402

from vllm_course import config, grade_cli  # noqa: E402
from vllm_course.build import require  # noqa: E402


def course_copy(base: Path, exercise: str, answers: str, students: int) -> Path:
    """A course folder with `students` submissions of one answer set, and no gradebook yet."""
    root = base / "course"
    root.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / exercise, root / "solutions" / exercise)
    release = nbformat.read(str(ROOT / "notebooks" / exercise / notebook_name(exercise)), 4)
    nb = submissions(exercise, graded_only=False)[answers].applied_to(release)
    for n in range(students):
        folder = root / "grading" / "submitted" / f"student{n:02d}" / exercise
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / notebook_name(exercise)))
    return root


def _errors(root: Path, exercise: str, student: str) -> list[str]:
    """The error outputs of a student's autograded notebook, one line each (why points were lost)."""
    path = root / "grading" / "autograded" / student / exercise / notebook_name(exercise)
    if not path.is_file():
        return ["no autograded notebook"]
    nb = nbformat.read(str(path), 4)
    return [f"{c.get('id')}: {o.ename}: {o.evalue[:160]}" for c in nb.cells for o in c.get("outputs", [])
            if o.output_type == "error"] + [f"{c.get('id')}: stderr: {o.text[:160]!r}" for c in nb.cells
                                             for o in c.get("outputs", []) if o.output_type == "stream"
                                             and o.name == "stderr" and c.metadata.get("nbgrader", {}).get("grade")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--exercise", default="ex1_download_and_cache")
    parser.add_argument("--answers", default=None,
                        help="answer set from tests/nbgrader_submissions (default: the exercise's correct exN-modules)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    args.answers = args.answers or f"{args.exercise.split('_')[0]}-modules"
    require(config.BASE_MODEL)
    print(f"{args.students} x {args.answers} on {args.exercise}, {os.cpu_count()} CPUs, SQLite gradebook")
    print(f"{'workers':>7} {'seconds':>8} {'students/min':>12}  failed  same scores  per student (seconds/score)")
    serial: dict[str, float | None] | None = None
    built = config.repos_dir().resolve()  # read once: each run below moves VLLM_COURSE_HOME to a temporary home
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
            home = Path(tmp) / "home"
            (home).mkdir()
            (home / "repos").symlink_to(built, target_is_directory=True)
            os.environ.update(VLLM_COURSE_HOME=str(home), VLLM_COURSE_HUB_PORT=str(grade_cli._free_port()))
            root = course_copy(Path(tmp), args.exercise, args.answers, args.students)
            run = grade_cli.grade(args.exercise, root, workers=workers, feedback=False, progress=False)
            errors = {g.student: _errors(root, args.exercise, g.student) for g in run.grades}
        scores = {g.student: g.score for g in run.grades}
        serial = serial or scores
        failed = [g.student for g in run.grades if not g.ok]
        per_min = 60 * len(run.grades) / run.seconds
        each = " ".join(f"{g.seconds:.0f}s/{g.score if g.score is None else f'{g.score:g}'}pt" for g in run.grades)
        print(f"{workers:>7} {run.seconds:8.0f} {per_min:12.2f}  {len(failed):>6}  {str(scores == serial):>11}  {each}",
              flush=True)
        for g in run.grades:
            if not g.ok:
                print(f"        {g.student}: {g.error}")
            for line in errors[g.student]:
                print(f"        {g.student}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
