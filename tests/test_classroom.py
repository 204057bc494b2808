"""A class on a real JupyterHub: release, fetch, submit, collect, grade, feedback, through the hub's proxy.

JupyterHub (from PyPI) and configurable-http-proxy (from npm, `make class`) run with the
committed deploy/jupyterhub_config.py. The users are real OS users (created here with `useradd`,
removed afterwards) spawned by JupyterHub's default LocalProcessSpawner: each server runs under
its own uid, so the exchange's and the homes' permissions are the ones a class gets. (The tests
run as root; without root this module is skipped.)

One instructor and three students of exercise 1.6.1, answers from tests/nbgrader_submissions:

    mod       `ex1-modules`, correct in another style          -> full marks
    part1     only Part 1 answered (the instructor's solution)  -> exactly Part 1's points
    rel       the fetched notebook, handed back untouched        -> zero

Every step goes through the proxy with the user's own API token, to the endpoints JupyterLab's
nbgrader panels call: formgrader's `assign` and `release` (instructor), `assignments/fetch`,
the contents API to save answers, `assignments/submit`, `assignments/fetch_feedback` (students).
The instructor grades with `python -m vllm_course grade` (collect, autograde, export, feedback)
run as the instructor's OS user, then releases feedback with formgrader's `release_feedback`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import pytest
from test_nbgrader_pipeline import hidden_lines, notebook_name, part1_submission, parts, submissions

from vllm_course import config
from vllm_course.build import require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXERCISE = "ex1_download_and_cache"
COURSE_ID = "vllm-1.6-model-loading"
PROXY = ROOT / "deploy" / "node_modules" / ".bin" / "configurable-http-proxy"
PREFIX = f"vc{os.getpid() % 10000}"  # OS user names of this run
INSTRUCTOR = f"{PREFIX}teach"
STUDENTS = {f"{PREFIX}mod": "ex1-modules", f"{PREFIX}part1": "part1", f"{PREFIX}rel": None}

if os.geteuid() != 0 or not shutil.which("useradd"):
    pytest.skip("needs root and useradd: the class runs as real OS users", allow_module_level=True)


@dataclass
class User:
    name: str
    token: str
    base: str  # https://proxy/user/<name>

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.base}/{path.lstrip('/')}", headers=headers, timeout=600, **kw)

    def ok(self, method: str, path: str, **kw):
        r = self.api(method, path, **kw)
        assert r.status_code < 300, f"{self.name} {method} {path}: {r.status_code} {r.text[:2000]}"
        return r.json() if r.content else None


@dataclass
class Class:
    url: str
    users: dict[str, User]
    home: dict[str, Path]
    exchange: Path
    course: Path
    course_hub: str
    timings: dict[str, float]
    hub_log: Path


@pytest.fixture(scope="module")
def klass():
    """A running JupyterHub with the course config, one instructor and three students; removed after."""
    weights = require(config.BASE_MODEL) / "model.safetensors"
    assert weights.stat().st_mode & 0o004, (f"{weights} is readable by its owner only (built before the model build made "
                                            f"builds world-readable): `chmod -R a+rX {config.repos_dir()}`")
    assert PROXY.exists(), "configurable-http-proxy missing: run `make class` (npm install in deploy/)"
    base = Path(tempfile.mkdtemp(prefix="class-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir(mode=0o755)
    exchange = base / "exchange"
    exchange.mkdir()
    exchange.chmod(0o1777)
    state = base / "state"
    state.mkdir(mode=0o700)
    names = [INSTRUCTOR, *STUDENTS]
    home = {n: base / "home" / n for n in names}
    for name in names:
        subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["useradd", "-m", "-d", str(home[name]), "-s", "/bin/bash", name], check=True)
        home[name].chmod(0o700)
    course = home[INSTRUCTOR] / "course"
    course.mkdir()
    shutil.copy2(ROOT / "nbgrader_config.py", course)
    for top in ("solutions", "notebooks"):
        shutil.copytree(ROOT / top / EXERCISE, course / top / EXERCISE)
    subprocess.run(["chown", "-R", f"{INSTRUCTOR}:{INSTRUCTOR}", str(course)], check=True)

    opened = _open_interpreter_path(INSTRUCTOR)
    port = _free_ports(4)
    admin_token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VLLM_COURSE"))}
    env.update(VLLM_CLASS_PORT=str(port), VLLM_CLASS_INSTRUCTOR=INSTRUCTOR, VLLM_CLASS_EXCHANGE=str(exchange),
               VLLM_CLASS_MODELS=str(config.repos_dir().resolve()), VLLM_CLASS_ADMIN_TOKEN=admin_token,
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    log = base / "jupyterhub.log"
    start = time.perf_counter()
    hub = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(ROOT / "deploy" / "jupyterhub_config.py")],
                           cwd=state, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    timings: dict[str, float] = {}
    try:
        _wait(lambda: hub.poll() is None and httpx.get(f"{url}/hub/api/", timeout=2).status_code == 200, 240, log,
              alive=lambda: hub.poll() is None)
        timings["jupyterhub up"] = time.perf_counter() - start
        admin = httpx.Client(base_url=f"{url}/hub/api", headers={"Authorization": f"token {admin_token}"}, timeout=120)
        users = {}
        for name in names:
            assert admin.post(f"/users/{name}").status_code in (201, 409)
            token = admin.post(f"/users/{name}/tokens", json={"note": "classroom test"}).json()["token"]
            users[name] = User(name, token, f"{url}/user/{name}")
        t0 = time.perf_counter()
        for name in names:
            started = admin.post(f"/users/{name}/server")
            assert started.status_code in (201, 202), f"{name}: {started.text}\n{log.read_text()[-3000:]}"
        _wait(lambda: all(admin.get(f"/users/{n}").json()["servers"].get("", {}).get("ready") for n in names), 180, log)
        timings["4 servers started"] = time.perf_counter() - t0
        yield Class(url, users, home, exchange, course, f"http://127.0.0.1:{port + 3}", timings, log)
        for name in names:
            admin.delete(f"/users/{name}/server")
    finally:
        hub.terminate()
        try:
            hub.wait(30)
        except subprocess.TimeoutExpired:
            hub.kill()
        for name in names:
            _kill_processes_of(name)
        _restore_modes(opened)
        if not os.environ.get("CLASSROOM_KEEP"):  # CLASSROOM_KEEP=1 keeps the users and files to look at
            for name in names:
                subprocess.run(["userdel", "-r", name], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def run(klass: Class, summary) -> dict:
    """The whole path once: release, fetch, answer, submit, collect and grade, release and fetch feedback."""
    teacher = klass.users[INSTRUCTOR]
    t0 = time.perf_counter()
    assert teacher.ok("POST", f"formgrader/api/assignment/{EXERCISE}/assign")["success"]
    released = teacher.ok("POST", f"formgrader/api/assignment/{EXERCISE}/release")
    assert released["success"], released
    release_nb = nbformat.read(str(ROOT / "notebooks" / EXERCISE / notebook_name(EXERCISE)), 4)
    answers = submissions(EXERCISE, graded_only=False)
    listed = {}
    for name, answer in STUDENTS.items():
        student = klass.users[name]
        student.ok("POST", "assignments/fetch", params={"course_id": COURSE_ID, "assignment_id": EXERCISE})
        path = f"{EXERCISE}/{notebook_name(EXERCISE)}"
        fetched = student.ok("GET", f"api/contents/{path}", params={"content": "1"})
        nb = nbformat.from_dict(fetched["content"])
        if answer == "part1":
            nb = part1_submission(nbformat.read(str(ROOT / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4), nb)
        elif answer:
            nb = answers[answer].applied_to(nb)
        student.ok("PUT", f"api/contents/{path}", json={"type": "notebook", "format": "json", "content": nb})
        listed[name] = student.ok("POST", "assignments/submit", params={"course_id": COURSE_ID, "assignment_id": EXERCISE})
    klass.timings["release, 3 fetches and submits"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    env = {"HOME": str(klass.home[INSTRUCTOR]), "PATH": f"{BIN}:/usr/bin:/bin",
           "JUPYTER_CONFIG_PATH": f"{klass.course}:{ROOT / 'deploy' / 'jupyter'}",
           "VLLM_CLASS_EXCHANGE": str(klass.exchange), "VLLM_COURSE_HUB_PORT": str(_free_ports(1))}
    graded = subprocess.run(["runuser", "-u", INSTRUCTOR, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                             sys.executable, "-m", "vllm_course", "grade", EXERCISE, "--course", str(klass.course)],
                            capture_output=True, text=True, timeout=1500)
    klass.timings["grade command (collect, autograde 3, export, feedback)"] = time.perf_counter() - t1
    assert "steps: generate_assignment" not in graded.stdout, "formgrader's assign should have created it"
    assert "collect" in graded.stdout, graded.stdout + graded.stderr[-3000:]

    t2 = time.perf_counter()
    assert teacher.ok("POST", f"formgrader/api/assignment/{EXERCISE}/release_feedback")["success"]
    feedback = {}
    for name in STUDENTS:
        klass.users[name].ok("POST", "assignments/fetch_feedback", params={"course_id": COURSE_ID, "assignment_id": EXERCISE})
        feedback[name] = sorted(klass.home[name].glob(f"{EXERCISE}/feedback/*/*.html"))
    klass.timings["release and fetch feedback"] = time.perf_counter() - t2
    klass.timings["release -> feedback, 3 students"] = time.perf_counter() - t0
    summary(["classroom timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in klass.timings.items()),
             *("  " + line for line in graded.stdout.splitlines()[-6:])])
    return {"graded": graded, "feedback": feedback, "submitted": listed}


class TestTheClassHub:
    def test_does_every_server_get_the_course_hub_as_hf_endpoint(self, klass):
        """Does each user's server run as that OS user with HF_ENDPOINT set to the managed course hub?"""
        import psutil

        for name in klass.users:
            procs = [p for p in psutil.process_iter(["username", "cmdline"])
                     if p.info["username"] == name and "jupyterhub-singleuser" in " ".join(p.info["cmdline"] or [])]
            assert procs, f"no server process runs as {name}"
            environ = procs[0].environ()
            assert environ["HF_ENDPOINT"] == klass.course_hub, environ.get("HF_ENDPOINT")

    def test_does_the_managed_course_hub_serve_the_course_model(self, klass):
        """Does the course-hub service answer the Hub API for the course model?"""
        r = httpx.get(f"{klass.course_hub}/api/models/{config.BASE_MODEL}", timeout=30)
        assert r.status_code == 200 and any(s["rfilename"] == "model.safetensors" for s in r.json()["siblings"])


class TestTheAssignmentPath:
    def test_does_the_grade_command_score_each_student_as_expected(self, klass, run):
        """Do the gradebook's scores match, cell by cell: full marks, exactly Part 1's points, zero?"""
        from nbgrader.api import Gradebook

        solution = nbformat.read(str(ROOT / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4)
        full = submissions(EXERCISE, graded_only=False)["ex1-modules"].scores
        part1_ids = parts(solution)[0][2]
        expected = {f"{PREFIX}mod": full, f"{PREFIX}part1": {k: v if k in part1_ids else 0.0 for k, v in full.items()},
                    f"{PREFIX}rel": {k: 0.0 for k in full}}
        with Gradebook(f"sqlite:///{klass.course / 'grading' / 'gradebook.db'}") as gb:
            got = {name: {g.name: g.auto_score for g in gb.find_submission_notebook(
                notebook_name(EXERCISE).removesuffix(".ipynb"), EXERCISE, name).grades} for name in STUDENTS}
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2500:]}"
                       for p in sorted((klass.course / "grading" / "logs" / EXERCISE).glob("*.log")))
        assert got == expected, run["graded"].stdout + run["graded"].stderr[-3000:] + logs

    def test_does_each_student_fetch_only_their_own_feedback(self, klass, run):
        """Does every student get one feedback file, with their own score, and none of another's?"""
        for name in STUDENTS:
            files = run["feedback"][name]
            assert len(files) == 1, f"{name}: {files}"
        texts = {name: run["feedback"][name][0].read_text() for name in STUDENTS}
        assert texts[f"{PREFIX}mod"] != texts[f"{PREFIX}rel"]
        listed = klass.users[f"{PREFIX}rel"].ok("GET", "assignments", params={"course_id": COURSE_ID})
        feedback_names = [f for a in listed["value"] for f in a.get("feedback_updated", []) or []]
        assert all(PREFIX + "mod" not in str(f) for f in feedback_names)

    def test_can_a_student_not_read_another_students_files(self, klass, run):
        """Are another student's server, home, submission and feedback closed to a student?"""
        a, b = f"{PREFIX}mod", f"{PREFIX}part1"
        path = f"{EXERCISE}/{notebook_name(EXERCISE)}"
        r = httpx.get(f"{klass.url}/user/{a}/api/contents/{path}", headers={"Authorization": f"token {klass.users[b].token}"},
                      timeout=30, follow_redirects=False)
        assert r.status_code in (302, 403, 404), f"{b} read {a}'s notebook through the proxy: {r.status_code}"
        inbound = klass.exchange / COURSE_ID / "inbound"
        for target in (klass.home[a] / path, inbound, *klass.home[a].glob(f"{EXERCISE}/feedback/*/*.html")):
            done = subprocess.run(["runuser", "-u", b, "--", "cat" if target.is_file() else "ls", str(target)],
                                  capture_output=True, text=True)
            assert done.returncode != 0, f"{b} could read {target}"

    def test_are_hidden_tests_in_no_students_files(self, klass, run):
        """Does no file in any student's home, feedback included, hold a line of the hidden tests?"""
        solution = nbformat.read(str(ROOT / "solutions" / EXERCISE / notebook_name(EXERCISE)), 4)
        release = nbformat.read(str(ROOT / "notebooks" / EXERCISE / notebook_name(EXERCISE)), 4)
        lines = hidden_lines(solution, release)
        assert lines
        for name in STUDENTS:
            files = [p for p in klass.home[name].rglob("*") if p.is_file() and p.stat().st_size < 20_000_000]
            assert any(p.suffix == ".html" for p in files), f"{name} has no feedback"
            for p in files:
                text = p.read_text(errors="ignore")
                leaked = [line for line in lines if line in text or json.dumps(line)[1:-1] in text]
                assert not leaked, f"{p} holds hidden test lines: {leaked[:2]}"


def _open_interpreter_path(user: str) -> dict[Path, int]:
    """Let other users traverse the folders above this venv's interpreter; return the modes to restore.

    On the course machines the venv's Python is pyenv's, under /root (mode 0700): no other user can
    run it. For the test's duration the blocking folders get o+x (traverse, not list); teardown puts
    the modes back. A real server keeps the venv where users can run it (docs/classroom.md).
    """
    changed: dict[Path, int] = {}
    # The interpreter itself, the venv's link to it and the checkout (the editable course package):
    # a fresh clone made by `mktemp -d` sits in a 0700 folder too.
    targets = (Path(os.path.realpath(sys.executable)), Path(sys.executable).absolute(), ROOT / "helpers")
    folders = sorted({folder for target in targets for folder in target.parents}, key=lambda f: len(f.parts))
    for folder in folders:
        mode = folder.stat().st_mode
        if not mode & 0o001:
            changed[folder] = mode & 0o7777
            folder.chmod(mode & 0o7777 | 0o001)
    probe = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "pass"], capture_output=True, text=True)
    if probe.returncode != 0:
        _restore_modes(changed)
        pytest.fail(f"{user} cannot run {sys.executable}: {probe.stderr[-500:]}")
    return changed


def _restore_modes(changed: dict[Path, int]) -> None:
    for folder, mode in changed.items():
        folder.chmod(mode)


def _kill_processes_of(user: str) -> None:
    """Kill, by pid, what still runs as one of this run's OS users (servers, kernels, course hubs)."""
    import psutil

    for p in psutil.process_iter(["username"]):
        if p.info["username"] == user:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def _wait(ready, seconds: float, log: Path, alive=lambda: True) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and alive():
        try:
            if ready():
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready after {seconds} s (or JupyterHub exited); its log ends:\n{log.read_text()[-4000:]}")


def _free_ports(n: int) -> int:
    """A port p such that p .. p+n-1 are all free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first = sock.getsockname()[1]
        if first + n < 65535 and all(_free(first + i) for i in range(n)):
            return first
    raise RuntimeError(f"no {n} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
