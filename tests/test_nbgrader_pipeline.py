"""The nbgrader pipeline end to end: the real CLI, real kernels, real vLLM, in a copy of the course.

What an instructor does (docs/instructor-guide.md) is run in a temporary copy of the course root
(nbgrader_config.py, solutions/, notebooks/): `generate_assignment`, `db student add`,
submissions in grading/submitted/<student>/<exercise>/, `autograde`, `export`, `generate_feedback`.
Every exercise folder under solutions/ is covered; each is graded with one `autograde` call for
all of its students. Submissions, named by state:

    solution      the instructor's notebook                       -> full marks on every graded cell
    release       the released notebook, unchanged                -> zero
    part1         the release with Part 1's answers filled in     -> exactly Part 1's points
    <submission>  tests/nbgrader_submissions/<exercise>.py: answer sources applied to the release,
                  and the score expected on every auto-graded cell: at least three correct answers
                  in other styles (one imports differently from the starter code: graded cells must
                  stand on their own) and, for every graded part, a cheat that must lose its points

An endless loop in an answer cell is graded by tests/test_grade_command.py (the instructor's command).

Conventions this relies on (the exercises follow them): headings `## Part X (N points)` with N the
sum of that part's graded cells; Part 1's graded cells depend only on Part 1's answers.

The kernels get a private VLLM_COURSE_HOME whose `repos` links to the built course models, so
grading here never touches the shared hub, caches or scratch folders. The seconds each student's
notebook ran in autograde are printed (terminal) and kept in grading/autograde-seconds.txt of the copy.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from vllm_course import config
from vllm_course.build import require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = Path(__file__).with_name("nbgrader_submissions")
BIN = Path(sys.executable).parent  # nbgrader shells out to `alembic`: the venv's bin must be on PATH
PART_RE = re.compile(r"^##\s+Part\s+(\w+)\s+\((\d+)\s+points?\)", re.MULTILINE)
HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
SOLUTION_RE = re.compile(r"(?P<indent>[ \t]*)### BEGIN SOLUTION\n.*?### END SOLUTION", re.DOTALL)
VOLATILE_CELL_KEYS = {"execution", "collapsed", "scrolled", "trusted"}
EXERCISES = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))
if os.environ.get("COURSE_EXERCISES"):  # e.g. COURSE_EXERCISES=ex2_offline_setup while working on one exercise
    EXERCISES = [e for e in EXERCISES if e in os.environ["COURSE_EXERCISES"].split(",")]


# ---------------------------------------------------------------- notebooks, read and built


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def grade_cells(nb) -> dict[str, int]:
    """grade_id -> points of every graded cell (auto-graded tests and manually graded answers)."""
    return {nbgrader_meta(c)["grade_id"]: nbgrader_meta(c).get("points", 0) for c in nb.cells if nbgrader_meta(c).get("grade")}


def auto_cells(nb) -> dict[str, int]:
    """grade_id -> points of every auto-graded cell (a test cell: graded, not an answer)."""
    return {nbgrader_meta(c)["grade_id"]: nbgrader_meta(c).get("points", 0) for c in nb.cells
            if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")}


def parts(nb) -> list[tuple[str, int, list[str]]]:
    """(part name, points in its heading, grade_ids of its graded cells) in notebook order."""
    found: list[tuple[str, int, list[str]]] = []
    for cell in nb.cells:
        match = PART_RE.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            found.append((match.group(1), int(match.group(2)), []))
        elif found and nbgrader_meta(cell).get("grade"):
            found[-1][2].append(nbgrader_meta(cell)["grade_id"])
    return found


def strip_markers(source: str) -> str:
    """A solution cell as a learner who solved it would submit it: the code, without nbgrader's markers."""
    return re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n?", "", source)


def part1_submission(solution, release):
    """The release with the answer cells of Part 1 (those above Part 2's heading) solved."""
    solved, headings = {}, 0
    for cell in solution.cells:
        headings += cell.cell_type == "markdown" and bool(PART_RE.search(cell.source))
        if headings > 1:
            break
        if nbgrader_meta(cell).get("solution"):
            solved[nbgrader_meta(cell)["grade_id"]] = strip_markers(cell.source)
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution") and nbgrader_meta(cell)["grade_id"] in solved:
            cell.source = solved[nbgrader_meta(cell)["grade_id"]]
    return nb


def last_code_answer(nb):
    """The last answer cell a learner writes code in (a written answer, a markdown cell, has no outputs)."""
    return [c for c in nb.cells if nbgrader_meta(c).get("solution") and c.cell_type == "code"][-1]


def endless_loop_submission(solution, release):
    """Part 1 solved, and the last code answer cell replaced by an endless loop."""
    nb = part1_submission(solution, release)
    last = last_code_answer(nb)
    last.source = "while True:  # never ends: the autograder must time this cell out\n    pass"
    return nb


def solution_as_submitted(solution):
    """The instructor's notebook as a learner would hand it in: code without the markers, no outputs."""
    nb = nbformat.from_dict(json.loads(json.dumps(solution)))
    for cell in nb.cells:
        if nbgrader_meta(cell).get("solution"):
            cell.source = strip_markers(cell.source)
    return nb


def comparable(nb) -> list[tuple]:
    """The parts of a notebook that must not change: cell types, ids, sources, non-volatile metadata."""
    cells = [(c.cell_type, c.get("id"), c.source, {k: v for k, v in c.metadata.items() if k not in VOLATILE_CELL_KEYS})
             for c in nb.cells]
    return [("kernelspec", nb.metadata.get("kernelspec"))] + cells


def html_text(path: Path) -> str:
    """The visible text of an HTML file (tags removed, entities decoded: highlighted code reads as code)."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.DOTALL | re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def hidden_lines(solution, release) -> list[str]:
    """Distinctive lines of the hidden tests: long enough, and nowhere in the release."""
    released = json.dumps(release.cells)
    lines = []
    for cell in solution.cells:
        for block in HIDDEN_RE.findall(cell.source):
            lines += [line.strip() for line in block.splitlines()
                      if len(line.strip()) >= 16 and json.dumps(line.strip())[1:-1] not in released]
    return lines


def without_hidden_tests(source: str) -> str:
    """A graded cell as nbgrader releases it: the hidden region, markers included, removed."""
    return re.sub(r"[ \t]*### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", "", source, flags=re.DOTALL).rstrip()


# ---------------------------------------------------------------- the course copy and the CLI


@dataclass(frozen=True)
class Course:
    """A temporary copy of the course root, graded with the real nbgrader CLI."""

    root: Path
    env: dict[str, str]

    def nbgrader(self, *args: str, timeout: float = 1500) -> str:
        done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"nbgrader {' '.join(args)} failed ({done.returncode}):\n{output[-4000:]}"
        return output

    def submit(self, student: str, exercise: str, nb) -> None:
        folder = self.root / "grading" / "submitted" / student / exercise
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(folder / notebook_name(exercise)))

    def autograded(self, student: str, exercise: str):
        return nbformat.read(str(self.root / "grading" / "autograded" / student / exercise / notebook_name(exercise)), 4)

    def feedback(self, student: str, exercise: str) -> Path:
        return self.root / "grading" / "feedback" / student / exercise / notebook_name(exercise).replace(".ipynb", ".html")

    def scores(self, student: str, exercise: str) -> dict[str, float]:
        """grade_id -> auto score of each auto-graded (test) cell, from the gradebook."""
        tests = auto_cells(self.solution(exercise))
        return {name: auto for name, (auto, _) in self.grades(student, exercise).items() if name in tests}

    def grades(self, student: str, exercise: str) -> dict[str, tuple[float | None, bool]]:
        """grade_id -> (auto score or None, needs manual grading) for every graded cell."""
        from nbgrader.api import Gradebook

        notebook = notebook_name(exercise).removesuffix(".ipynb")
        with Gradebook(f"sqlite:///{self.root / 'grading' / 'gradebook.db'}") as gb:
            submitted = gb.find_submission_notebook(notebook, exercise, student)
            return {g.name: (g.auto_score, bool(g.needs_manual_grade)) for g in submitted.grades}

    def solution(self, exercise: str):
        """The source notebook as it was copied (the repo's may change while the pipeline runs)."""
        return nbformat.read(str(self.root / "solutions" / exercise / notebook_name(exercise)), 4)

    def release(self, exercise: str):
        """The release nbgrader generated in this copy (submissions are built from it)."""
        return nbformat.read(str(self.root / "notebooks" / exercise / notebook_name(exercise)), 4)


def notebook_name(exercise: str) -> str:
    names = sorted(p.name for p in (ROOT / "solutions" / exercise).glob("*.ipynb"))
    assert len(names) == 1, f"solutions/{exercise} should hold exactly one notebook, found {names}"
    return names[0]


def solution_nb(exercise: str):
    return nbformat.read(str(ROOT / "solutions" / exercise / notebook_name(exercise)), 4)


@dataclass(frozen=True)
class Submission:
    """A learner's answer set: the source of some answer cells, and the score expected on every test cell."""

    name: str
    why: str
    answers: dict[str, str]  # grade_id of an answer cell -> its whole source (others keep the release's stub)
    scores: dict[str, float]  # grade_id of every auto-graded cell -> expected points

    def applied_to(self, release):
        """The release with these answers written into their cells, as a learner would hand it in."""
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        for cell in nb.cells:
            if nbgrader_meta(cell).get("solution") and nbgrader_meta(cell)["grade_id"] in self.answers:
                cell.source = self.answers[nbgrader_meta(cell)["grade_id"]]
        return nb


def submissions(exercise: str, *, graded_only: bool = True) -> dict[str, Submission]:
    """name -> Submission, from tests/nbgrader_submissions/<exercise>.py (its SUBMISSIONS dict).

    `graded_only`: only those this run grades (`_wanted`); False: every one (for the source checks).
    """
    path = SUBMISSIONS / f"{exercise}.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"nbgrader_submissions_{exercise}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: Submission(name, entry["why"], entry["answers"], {k: float(v) for k, v in entry["scores"].items()})
            for name, entry in module.SUBMISSIONS.items() if not graded_only or _wanted(name)}


def _wanted(name: str) -> bool:
    """Which submissions to grade: $COURSE_SUBMISSIONS = "ci" (default), "all", or names (comma list).

    "ci" grades two per exercise: `*-modules` (correct answers whose cells import in their own way:
    graded cells must stand alone) and `*-cheats` (a cheat in every graded part, in one run). The
    whole set (`make test-grading`) adds each cheat and style on its own: one graded run apiece.
    """
    wanted = os.environ.get("COURSE_SUBMISSIONS", "ci")
    if wanted == "all":
        return True
    if wanted == "ci":
        return name.endswith(("-modules", "-cheats"))
    return name in wanted.split(",")


LOG_FORMAT = "--Application.log_format=%(asctime)s [%(name)s] %(message)s"  # no %(highlevel)s: KeyError in every record
STUDENT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*Creating/updating student with ID '([^']+)'", re.MULTILINE)
STAMP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ", re.MULTILINE)


def seconds_per_student(log: str) -> dict[str, float]:
    """Seconds `nbgrader autograde` spent on each student, from its timestamped log (one student after another)."""
    from datetime import datetime

    def parse(stamp: str) -> datetime:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")

    starts = [(parse(m.group(1)), m.group(2)) for m in STUDENT_LINE.finditer(log)]
    last = max((parse(m.group(1)) for m in STAMP_LINE.finditer(log)), default=None)
    ends = [t for t, _ in starts[1:]] + [last]
    return {student: (end - start).total_seconds() for (start, student), end in zip(starts, ends)}


def course_copy(base: Path, exercises: list[str]) -> tuple[Path, dict[str, str]]:
    """`base/course` holding nbgrader_config.py and solutions/<exercise>, and the environment to grade it in.

    The environment has a course home of its own (`base/home`, whose `repos` links to the built
    course models) and a hub port of its own: a hub left on the default port by another test (or
    `make lab`) serves another root and would be refused. No PYTEST_CURRENT_TEST either: with it,
    ipykernel does not forward what C code writes to fd 2, so a graded cell's native stderr (vLLM's
    NUMA line), which nbgrader scores 0, would go unseen here.
    """
    require(config.BASE_MODEL)
    root, home = base / "course", base / "home"
    root.mkdir()
    home.mkdir()
    (home / "repos").symlink_to(config.repos_dir().resolve(), target_is_directory=True)
    shutil.copy2(ROOT / "nbgrader_config.py", root)
    for exercise in exercises:
        shutil.copytree(ROOT / "solutions" / exercise, root / "solutions" / exercise)
    return root, grading_env(home)


def grading_env(home: Path) -> dict[str, str]:
    """This process's environment without HF_*, VLLM_COURSE* and PYTEST_CURRENT_TEST; `home` and a free hub port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VLLM_COURSE")) and k != "PYTEST_CURRENT_TEST"}
    env.update(VLLM_COURSE_HOME=str(home), VLLM_COURSE_HUB_PORT=str(_free_port()),
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory, summary):
    """A graded copy of the course: every exercise generated, submitted, autograded, exported, fed back."""
    base = tmp_path_factory.mktemp("nbgrader-course")
    root, env = course_copy(base, EXERCISES)
    hub_port = int(env["VLLM_COURSE_HUB_PORT"])
    graded = Course(root, env)
    timings: dict[str, float] = {}
    per_student: dict[str, dict[str, float]] = {}

    for exercise in EXERCISES:
        graded.nbgrader("generate_assignment", exercise, "--force")
    students = ["solution", "release", "part1"] + sorted({s for e in EXERCISES for s in submissions(e)})
    graded.nbgrader("db", "student", "add", "solution", "--last-name=Solution", "--first-name=Instructor")
    roster = root / "students.csv"
    roster.write_text("id,last_name,first_name,email\n" + "".join(f"{s},{s},Test,\n" for s in students[1:]))
    graded.nbgrader("db", "student", "import", str(roster))
    for exercise in EXERCISES:
        solution, release = graded.solution(exercise), graded.release(exercise)
        graded.submit("solution", exercise, solution_as_submitted(solution))
        graded.submit("release", exercise, release)
        graded.submit("part1", exercise, part1_submission(solution, release))
        for name, submission in submissions(exercise).items():
            graded.submit(name, exercise, submission.applied_to(release))
        start = time.perf_counter()
        # up to ~5 min per student on a busy 2-core machine (1.6.3 loads and times two models)
        limit = 300 * (3 + len(submissions(exercise))) + 600
        per_student[exercise] = seconds_per_student(graded.nbgrader("autograde", exercise, LOG_FORMAT, timeout=limit))
        timings[exercise] = time.perf_counter() - start
    for exercise in EXERCISES:
        graded.nbgrader("generate_feedback", exercise)
    graded.nbgrader("export", "--to=grading/grades.csv")
    _report_seconds(summary, graded, timings, per_student)
    yield graded
    subprocess.run([sys.executable, "-m", "vllm_course", "hub", "stop", "--port", str(hub_port)],
                   env=env, capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)  # scratch caches hold copies of the model


def _report_seconds(summary, graded: Course, timings: dict[str, float],
                    per_student: dict[str, dict[str, float]]) -> None:
    """Show (in pytest's summary) and save the seconds autograde spent per student and exercise."""
    lines = ["autograde seconds per student (from nbgrader's log; `all` = the whole autograde call):"]
    totals: dict[str, float] = {}
    for exercise in EXERCISES:
        row = per_student.get(exercise, {})
        for name, seconds in row.items():
            totals[name] = totals.get(name, 0.0) + seconds
        lines.append(f"  {exercise:24} all {timings[exercise]:5.0f}  " + "  ".join(f"{n} {v:.0f}" for n, v in row.items()))
    lines.append(f"  solution, these exercises together: {totals.get('solution', 0):.0f} s (target: 120 s for all three)")
    lines += _score_table(graded)
    (graded.root / "grading" / "autograde-seconds.txt").write_text("\n".join(lines) + "\n")
    summary(lines)


def _score_table(graded: Course) -> list[str]:
    """Each graded submission's score on every auto-graded cell, as `got/expected` where they differ."""
    lines = []
    for exercise in EXERCISES:
        full = auto_cells(graded.solution(exercise))
        expected = {"solution": {k: float(v) for k, v in full.items()}, "release": dict.fromkeys(full, 0.0),
                    **{name: s.scores for name, s in submissions(exercise).items()}}
        lines.append(f"scores per graded cell, {exercise} (cells in notebook order; `got/expected` where they differ):")
        lines.append("  " + " ".join(f"{i + 1}:{cell}" for i, cell in enumerate(full)))
        for student in ["solution", "release", "part1", *submissions(exercise)]:
            got = graded.scores(student, exercise)
            cells = [f"{got.get(c, 0):g}" if student not in expected or got.get(c) == expected[student][c]
                     else f"{got.get(c)}/{expected[student][c]:g}" for c in full]
            lines.append(f"  {student:22} {sum(got.values()):4g}/{sum(full.values()):<3g} " + " ".join(f"{v:>4}" for v in cells))
    return lines


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- the sources (no kernel)


@pytest.mark.parametrize("exercise", EXERCISES)
class TestSources:
    def test_do_part_headings_state_the_points_of_their_graded_cells(self, exercise):
        """Does each `## Part X (N points)` heading give the sum of its graded cells, and the title the total?"""
        nb = solution_nb(exercise)
        found = parts(nb)
        assert found, "no `## Part X (N points)` heading"
        points = grade_cells(nb)
        for name, heading_points, ids in found:
            assert ids, f"Part {name} has no graded cell"
            assert heading_points == sum(points[i] for i in ids), f"Part {name}: heading says {heading_points}"
        title = re.search(r"^# .*\((\d+) points\)", nb.cells[0].source, re.MULTILINE)
        assert title and int(title.group(1)) == sum(points.values())

    def test_does_every_graded_cell_start_with_a_question_docstring(self, exercise):
        """Does each graded cell say what it checks, as a question, before any code?"""
        for cell in solution_nb(exercise).cells:
            if nbgrader_meta(cell).get("grade") and not nbgrader_meta(cell).get("solution"):
                first = cell.source.splitlines()[0]
                assert first.startswith('"""') and first.rstrip().endswith('?"""'), first

    def test_are_markers_only_in_the_cells_nbgrader_treats_them(self, exercise):
        """Are solution markers only in answer cells, hidden tests only in graded cells, and the kernel python3?"""
        nb = solution_nb(exercise)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for cell in nb.cells:
            meta = nbgrader_meta(cell)
            if "BEGIN SOLUTION" in cell.source:
                assert meta.get("solution"), f"solution markers in a non-answer cell {cell.get('id')}"
            if "BEGIN HIDDEN TESTS" in cell.source:
                assert meta.get("grade") and meta.get("locked"), f"hidden tests in a non-graded cell {cell.get('id')}"
            if meta.get("solution"):
                assert SOLUTION_RE.search(cell.source), f"answer cell {meta['grade_id']} has no solution region"

    def test_do_the_submissions_fit_the_exercise(self, exercise):
        """Does every submission fill only answer cells the exercise has, and expect a score for every test cell?"""
        nb = solution_nb(exercise)
        answer_ids = {nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c).get("solution")}
        for name, submission in submissions(exercise, graded_only=False).items():
            assert set(submission.answers) <= answer_ids, f"{name} fills cells the exercise lacks: {set(submission.answers) - answer_ids}"
            assert set(submission.scores) == set(auto_cells(nb)), f"{name} must expect a score for every auto-graded cell"
            assert all(0 <= v <= auto_cells(nb)[k] for k, v in submission.scores.items()), f"{name}: a score above the cell's points"

    def test_are_there_three_correct_styles_and_a_cheat_for_every_part(self, exercise):
        """Do at least 3 submissions expect full marks, and does every graded part have a submission that loses its points?"""
        nb, found = solution_nb(exercise), submissions(exercise, graded_only=False)
        full = auto_cells(nb)
        correct = [n for n, s in found.items() if s.scores == {k: float(v) for k, v in full.items()}]
        assert len(correct) >= 3, f"only {correct} expect full marks"
        for part, _, ids in parts(nb):
            auto = [i for i in ids if i in full]
            cheats = [n for n, s in found.items() if any(s.scores[i] < full[i] for i in auto)
                      and any(s.answers.get(a) for a in _answers_of_part(nb, part))]
            assert not auto or cheats, f"Part {part} has no cheat among the submissions"


# ---------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("exercise", EXERCISES)
class TestGenerateAssignment:
    def test_does_generate_assignment_reproduce_the_committed_release(self, course, exercise):
        """Does `nbgrader generate_assignment` write exactly the committed notebooks/<exercise>/?"""
        generated_dir = course.root / "notebooks" / exercise
        committed_dir = ROOT / "notebooks" / exercise
        assert committed_dir.is_dir(), f"notebooks/{exercise} is missing: run `nbgrader generate_assignment {exercise}`"
        assert sorted(p.name for p in generated_dir.iterdir()) == sorted(p.name for p in committed_dir.iterdir())
        generated = nbformat.read(str(generated_dir / notebook_name(exercise)), 4)
        assert comparable(generated) == comparable(nbformat.read(str(committed_dir / notebook_name(exercise)), 4)), (
            f"notebooks/{exercise} is stale: run `nbgrader generate_assignment {exercise} --force` and commit it")

    def test_does_the_release_hide_solutions_and_hidden_tests(self, course, exercise):
        """Is each graded cell released without its hidden region, and each answer cell as a stub?"""
        released = {nbgrader_meta(c).get("grade_id"): c for c in course.release(exercise).cells}
        for cell in course.solution(exercise).cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade") and not meta.get("solution"):
                assert released[meta["grade_id"]].source.rstrip() == without_hidden_tests(cell.source)
            if meta.get("solution"):
                code_stub = "{0}# YOUR CODE HERE\n{0}raise NotImplementedError()"
                stub = SOLUTION_RE.sub(lambda m: (code_stub if cell.cell_type == "code" else "{0}YOUR ANSWER HERE")
                                       .format(m["indent"]), cell.source)
                assert released[meta["grade_id"]].source == stub, f"{meta['grade_id']}: the solution is not replaced by the stub"


@pytest.mark.parametrize("exercise", EXERCISES)
class TestAutograde:
    def test_does_the_solution_get_full_marks_on_every_graded_cell(self, course, exercise):
        """Does the instructor's solution, submitted as a learner would, score every point of every cell?"""
        expected = {k: float(v) for k, v in auto_cells(course.solution(exercise)).items()}
        assert course.scores("solution", exercise) == expected, _errors(course.autograded("solution", exercise))
        manual = set(grade_cells(course.solution(exercise))) - set(expected)
        assert {k for k, (_, needs) in course.grades("solution", exercise).items() if needs} <= manual

    def test_does_the_unmodified_release_score_zero(self, course, exercise):
        """Does the release, handed in untouched, score zero on every cell?"""
        scores = course.scores("release", exercise)
        assert scores and set(scores.values()) == {0.0}, scores

    def test_does_solving_part_one_score_exactly_its_points(self, course, exercise):
        """With only Part 1 answered, are exactly Part 1's graded cells scored, in full?"""
        name, points, ids = parts(course.solution(exercise))[0]
        full = auto_cells(course.solution(exercise))
        expected = {gid: float(full[gid]) if gid in ids else 0.0 for gid in full}
        scores = course.scores("part1", exercise)
        assert scores == expected, _errors(course.autograded("part1", exercise))
        assert sum(scores.values()) == points, "Part 1 should be auto-graded only"

    def test_does_every_submission_score_as_expected_cell_by_cell(self, course, exercise):
        """Do correct answers in other styles get full marks, and does each cheat lose exactly the points it fakes?"""
        wrong = []
        for name, submission in submissions(exercise).items():
            got = course.scores(name, exercise)
            for cell, expected in submission.scores.items():
                if got.get(cell) != expected:
                    wrong.append(f"{name} {cell}: expected {expected:g}, got {got.get(cell)}")
            if any(got.get(c) != v for c, v in submission.scores.items()):
                wrong.append(f"  ({submission.why}) errors: {_errors(course.autograded(name, exercise))}")
        assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("exercise", EXERCISES)
class TestFeedback:
    def test_does_feedback_show_scores_but_no_hidden_test_source(self, course, exercise):
        """Does every student's feedback HTML carry the score but not one line of the hidden tests?"""
        lines = hidden_lines(course.solution(exercise), course.release(exercise))
        assert lines, "this exercise has no hidden tests"
        autograded = json.dumps(course.autograded("solution", exercise).cells)
        assert all(json.dumps(line)[1:-1] in autograded for line in lines), "autograde should run the hidden tests"
        for student in ["solution", "release", "part1", *submissions(exercise)]:
            text = html_text(course.feedback(student, exercise))
            leaked = [line for line in lines if line in text]
            assert not leaked, f"{student}'s feedback shows hidden test source: {leaked[:3]}"
            assert "BEGIN HIDDEN TESTS" not in text
        solution_text = html_text(course.feedback("solution", exercise))
        got, total = sum(course.scores("solution", exercise).values()), sum(grade_cells(course.solution(exercise)).values())
        assert re.search(rf"Score:\s*{got:g}(\.0)?\s*/\s*{total:g}(\.0)?", solution_text), "the feedback should show the score"


class TestExport:
    def test_does_export_write_one_row_per_submission_with_gradebook_scores(self, course):
        """Does `nbgrader export --to grading/grades.csv` list every student of every exercise with the gradebook's score?"""
        with open(course.root / "grading" / "grades.csv", newline="", encoding="utf-8") as fh:
            rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(fh)}
        for exercise in EXERCISES:
            total = sum(grade_cells(course.solution(exercise)).values())
            for student in ["solution", "release", "part1"]:
                row = rows[(exercise, student)]
                assert float(row["max_score"]) == total
                assert float(row["score"]) == sum(course.scores(student, exercise).values())
        assert float(rows[(EXERCISES[0], "solution")]["score"]) == sum(auto_cells(course.solution(EXERCISES[0])).values())


def _answers_of_part(nb, part: str) -> list[str]:
    """grade_ids of the answer cells between Part `part`'s heading and the next heading."""
    ids, current = [], None
    for cell in nb.cells:
        match = PART_RE.search(cell.source) if cell.cell_type == "markdown" else None
        if match:
            current = match.group(1)
        elif current == part and nbgrader_meta(cell).get("solution"):
            ids.append(nbgrader_meta(cell)["grade_id"])
    return ids


def _errors(nb) -> str:
    """The errors the kernel printed in an autograded notebook (for assertion messages)."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                out.append(f"{nbgrader_meta(cell).get('grade_id', cell.get('id'))}: {o.ename}: {o.evalue[:300]}")
    return "\n".join(out) or "no error outputs"

