"""`python -m vllm_course grade EXERCISE`: nbgrader's generate_assignment (if the gradebook lacks it), collect (if the
exchange works), autograde (one process per student), export (CSV) and generate_feedback, in one command. A failing or
endless notebook costs only its student: a cell stops after `Execute.timeout` s, a process past `--student-timeout`
is killed."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import config
from .console import table
from .errors import CourseError
from .machine import core_share, kill_tree

STUDENT_TIMEOUT_S = 3600  # backstop for a whole notebook: nbgrader's own limit is per cell
_BIN = Path(sys.executable).parent  # nbgrader shells out to this venv's `alembic` and starts its kernel


@dataclass(frozen=True)
class StudentGrade:
    """One student's autograde: the gradebook's score and the seconds the autograde process ran."""

    student: str
    score: float | None  # None when autograde did not record a submission
    max_score: float
    seconds: float
    error: str = ""  # why this student's autograde failed, "" when it succeeded

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class GradeRun:
    """What `grade()` did: every student's grade, the CSV written, and the steps it ran."""

    exercise: str
    grades: list[StudentGrade]
    csv: Path
    steps: list[str]
    seconds: float

    def table(self) -> str:
        """The summary an instructor reads: one row per student, then the totals."""
        rows = [["student", "score", "max", "seconds", "note"]]
        rows += [[g.student, "-" if g.score is None else f"{g.score:g}", f"{g.max_score:g}", f"{g.seconds:.1f}",
                  g.error] for g in self.grades]
        per_min = 60 * len(self.grades) / self.seconds if self.seconds else 0.0
        return (f"{table(rows, right=(1, 2, 3))}\n{len(self.grades)} students in {self.seconds:.0f} s "
                f"({per_min:.2f} students/minute); grades in {self.csv}")


def grade(exercise: str, course: Path | None = None, *, students: list[str] | None = None, workers: int = 1,
          cell_timeout: int | None = None, student_timeout: float = STUDENT_TIMEOUT_S,
          csv: Path | None = None, feedback: bool = True, progress: bool = True) -> GradeRun:
    """Grade `exercise` for every submitted student (or `students`) with nbgrader, and write the CSV.

    `course` holds nbgrader_config.py (default: here). `workers` students are graded at once, each with its own
    course home and hub port (the gradebook is SQLite: see benchmarks/bench_grading.py before using more than 1)."""
    from nbgrader.plugins import CsvExportPlugin
    start = time.perf_counter()
    course = Path(course or Path.cwd()).resolve()
    if shutil.which("alembic") is None and (_BIN / "alembic").exists():  # nbgrader's gradebook runs it
        os.environ["PATH"] = f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    api = _api(course)
    steps: list[str] = []
    with api.gradebook as gb:
        known = exercise in {a.name for a in gb.assignments}
    if not known:
        _check(api.generate_assignment(exercise, force=True, create=True), "generate_assignment", exercise, steps)
    if api.exchange_is_functional:
        _check(api.collect(exercise), "collect", exercise, steps)
    names = sorted(students or api.get_submitted_students(exercise))
    grades = _autograde_all(course, exercise, names, _worker_envs(course, max(1, workers)), cell_timeout,
                            student_timeout, progress)
    csv = Path(csv) if csv else course / "grading" / "grades.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    with api.gradebook as gb:
        grades = [_with_score(gb, exercise, g) for g in grades]
        CsvExportPlugin(config=api.config, to=str(csv)).export(gb)  # `nbgrader export --to CSV`
    steps += ["autograde", "export"]
    if feedback and any(g.ok for g in grades):
        grades = [_feedback(api, exercise, g) if g.ok else g for g in grades]
        steps.append("generate_feedback")
    return GradeRun(exercise, grades, csv, steps, time.perf_counter() - start)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `grade EXERCISE` to the course CLI."""
    cmd = subparsers.add_parser("grade", help="autograde every submitted student of an exercise (nbgrader)")
    cmd.add_argument("exercise", help="assignment id, e.g. ex1_download_and_cache")
    cmd.add_argument("--course", type=Path, default=Path("."), help="folder of nbgrader_config.py (default: .)")
    cmd.add_argument("--student", action="append", dest="students", help="grade only this student (repeatable)")
    cmd.add_argument("--workers", type=int, default=1, help="students graded at once (default 1)")
    cmd.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: the config's)")
    cmd.add_argument("--student-timeout", type=float, default=STUDENT_TIMEOUT_S,
                     help="seconds before one student's autograde is killed (default %(default)s)")
    cmd.add_argument("--csv", type=Path, default=None, help="export destination (default grading/grades.csv)")
    cmd.add_argument("--no-feedback", action="store_true", help="skip generate_feedback")
    cmd.set_defaults(func=_grade_command)


def _grade_command(args: argparse.Namespace) -> int:
    run = grade(args.exercise, args.course, students=args.students, workers=args.workers,
                cell_timeout=args.cell_timeout, student_timeout=args.student_timeout, csv=args.csv,
                feedback=not args.no_feedback)
    print(f"steps: {', '.join(run.steps)}")
    print(run.table())
    return 0 if all(g.ok for g in run.grades) else 1


def _api(course: Path):
    """nbgrader's API, configured as `nbgrader` run in `course` is (Jupyter config path, then the folder)."""
    from jupyter_core.paths import jupyter_config_path
    from nbgrader.apps import NbGrader, NbGraderAPI
    if not (course / "nbgrader_config.py").is_file():
        raise CourseError(f"{course} has no nbgrader_config.py: run the grade command from the course "
                          "folder, or pass --course <folder with nbgrader_config.py>.")
    app = NbGrader()
    app.config_file_paths.extend([*jupyter_config_path(), str(course)])
    with contextlib.chdir(course):  # nbgrader_config.py and nbgrader's paths are read relative to the course
        app.load_config_file()
        return NbGraderAPI(config=app.config)


def _check(result: dict, step: str, exercise: str, steps: list[str]) -> None:
    if not result.get("success", False):
        raise CourseError(f"nbgrader {step} {exercise} failed:\n{result.get('error') or result.get('log', '')}")
    steps.append(step)


def _feedback(api, exercise: str, g: StudentGrade) -> StudentGrade:
    """`nbgrader generate_feedback EX --student=S`; a failure is noted on that student's row."""
    result = api.generate_feedback(exercise, g.student)
    if result.get("success"):
        return g
    last = (result.get("error") or "").strip().splitlines()[-1:] or ["no error text"]
    return StudentGrade(g.student, g.score, g.max_score, g.seconds, f"generate_feedback failed: {last[0]}")


def _with_score(gb, exercise: str, g: StudentGrade) -> StudentGrade:
    from nbgrader.api import MissingEntry
    try:
        sub = gb.find_submission(exercise, g.student)
    except MissingEntry:
        return StudentGrade(g.student, None, gb.find_assignment(exercise).max_score, g.seconds,
                            g.error or "no submission in the gradebook")
    return StudentGrade(g.student, float(sub.score), float(sub.max_score), g.seconds, g.error)


def _autograde_all(course: Path, exercise: str, students: list[str], envs: list[dict[str, str]],
                   cell_timeout: int | None, student_timeout: float, progress: bool) -> list[StudentGrade]:
    """One `nbgrader autograde` process per student, `len(envs)` at a time, each on its worker's `core_share`."""
    import psutil
    from tqdm.auto import tqdm
    free = [(env, core_share(n, len(envs))) for n, env in enumerate(envs)]
    logs = course / "grading" / "logs" / exercise

    def one(student: str) -> StudentGrade:
        (env, cores), start, log = free.pop(), time.perf_counter(), f"(log: {logs / student}.log)"
        cmd = [sys.executable, "-m", "nbgrader", "autograde", exercise, f"--student={student}", "--force",
               *([f"--Execute.timeout={cell_timeout}"] if cell_timeout else [])]
        try:
            logs.mkdir(parents=True, exist_ok=True)
            with open(logs / f"{student}.log", "w", encoding="utf-8") as out:
                proc = subprocess.Popen(cmd, cwd=course, env=env, stdout=out, stderr=subprocess.STDOUT)
                if cores:  # before it starts a kernel: its kernels and engines inherit the worker's cores
                    psutil.Process(proc.pid).cpu_affinity(cores)
                try:
                    code = proc.wait(timeout=student_timeout)
                    error = f"autograde exited {code} {log}" if code else ""
                except subprocess.TimeoutExpired:
                    kill_tree(proc.pid)  # with its kernels and their engines
                    proc.wait()
                    error = f"killed after {student_timeout:g} s {log}"
            return StudentGrade(student, None, 0.0, time.perf_counter() - start, error)
        finally:
            free.append((env, cores))
            bar.set_postfix_str(student)
            bar.update(1)

    with (tqdm(total=len(students), unit="student", desc=f"autograde {exercise}", disable=not progress) as bar,
          ThreadPoolExecutor(max_workers=len(envs)) as pool):
        return list(pool.map(one, students))


def _worker_envs(course: Path, workers: int) -> list[dict[str, str]]:
    """Each worker's environment: no HF_* (each exercise sets up its own), and with several workers a course
    home (its `repos` linked to the built models) and hub port each, as exercises keep a scratch cache per home."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    base["PATH"] = f"{_BIN}{os.pathsep}{base.get('PATH', '')}"
    if workers == 1:
        return [base]
    envs = []
    for n in range(workers):
        home = course / "grading" / "worker-homes" / str(n)
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "repos").exists():
            (home / "repos").symlink_to(config.repos_dir().resolve(), target_is_directory=True)
        envs.append({**base, "VLLM_COURSE_HOME": str(home), "VLLM_COURSE_HUB_PORT": str(_free_port())})
    return envs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
