"""Independent checks the exercises' hidden tests call (nbgrader autograde). Each recomputes its fact from the source
(the HF cache on disk, the built repo's bytes, the hub's request log), so a value hard-coded earlier fails. They raise
`GradingCheckError` (an AssertionError: nbgrader fails the cell) whose message says expected, found and a hint."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import cache, console, formats, hub
from ..build import require
from ..errors import GradingCheckError, HubUnreachableError
from ..hub import HubHandle, HubStats
from ..hub.repos import file_hashes
from ..machine import kill_tree

_SCRIPT_PROBE = Path(__file__).with_name("script_probe.py")  # run by path in a fresh process (`run_script`)


@dataclass(frozen=True)
class CachedSnapshot:
    """One cached revision of a repo, as `scan_cache_dir()` sees it."""

    repo_id: str
    commit: str
    path: Path  # <cache>/models--org--name/snapshots/<commit>
    blobs: dict[str, Path]  # file path inside the snapshot -> blob it points to

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(sorted(self.blobs))


def scratch_dir(prefix: str) -> Path:
    """A new temporary folder, removed when this process (the grading kernel) exits: a graded cache holds a copy
    of the model, and a class's worth of them would fill the disk."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@contextlib.contextmanager
def native_stderr_to_stdout() -> Iterator[None]:
    """Send what C/C++ code writes to fd 2 during the block to stdout: nbgrader scores a test cell with
    stderr output 0, and vLLM's CPU library prints "NUMA binding: ..." to fd 2 when it loads an engine."""
    with tempfile.TemporaryFile() as captured:
        try:
            with console.fds_to(captured.fileno(), fds=(2,)):
                yield
        finally:
            captured.seek(0)
            if text := captured.read().decode(errors="replace"):
                print(text, end="", flush=True)


# ---------------------------------------------------------------- the Hugging Face cache
def cached_snapshot(repo_id: str, cache_dir: str | os.PathLike[str] | None = None) -> CachedSnapshot:
    """The cached revision of `repo_id` that `main` points to (or the only one); GradingCheckError if none."""
    from huggingface_hub import scan_cache_dir
    where = Path(cache_dir) if cache_dir is not None else cache.hub_cache().resolve()
    repos = [r for r in scan_cache_dir(where).repos if r.repo_id == repo_id and r.repo_type == "model"]
    if not repos:
        raise GradingCheckError(f"{repo_id} is not in the cache {where}: download it first (snapshot_download).")
    revisions = sorted(repos[0].revisions, key=lambda r: "main" not in r.refs)
    if len(revisions) > 1 and "main" not in revisions[0].refs:
        raise GradingCheckError(f"{repo_id} has {len(revisions)} cached revisions and none is `main`.")
    rev = revisions[0]
    blobs = {str(f.file_path.relative_to(rev.snapshot_path)): Path(f.blob_path) for f in rev.files}
    return CachedSnapshot(repo_id, rev.commit_hash, Path(rev.snapshot_path), blobs)


def check_snapshot_in_cache(path: str | os.PathLike[str], repo_id: str) -> CachedSnapshot:
    """Check `path` is the cached snapshot of `repo_id` (in HF_HUB_CACHE, as the scan sees it) with every file."""
    given, root = Path(path), cache.hub_cache().resolve()
    if not given.is_dir():
        raise GradingCheckError(f"{given} is not a folder: return the snapshot folder that snapshot_download gives.")
    if root not in given.resolve().parents:
        raise GradingCheckError(f"{given} is not inside HF_HUB_CACHE ({root}): download into the cache, "
                                "not into a local folder (no local_dir here).")
    snap = cached_snapshot(repo_id)
    if given.resolve() != snap.path.resolve():
        raise GradingCheckError(f"{given} is not the snapshot of {repo_id}@main the cache holds ({snap.path}).")
    if missing := sorted(set(repo_files(repo_id)) - set(snap.files)):
        raise GradingCheckError(f"The snapshot of {repo_id} lacks {', '.join(missing)}: download every file.")
    return snap


def check_blobs(snapshot: CachedSnapshot) -> None:
    """Check each snapshot file links to its blob, whose bytes hash to its name (sha256 or git sha1), as the repo's."""
    source = require(snapshot.repo_id)
    for name, blob in sorted(snapshot.blobs.items()):
        link = snapshot.path / name
        if link.resolve() != blob.resolve():
            raise GradingCheckError(f"{link} does not point to its blob {blob}.")
        sha256, git_sha1 = file_hashes(blob)
        if blob.name not in (sha256, git_sha1):
            raise GradingCheckError(f"The blob of {name} ({blob.name}) does not hash to its name: it is corrupt.")
        if (source / name).is_file() and file_hashes(source / name)[0] != sha256:
            raise GradingCheckError(f"{name} in the cache differs from the file the hub serves.")


def repo_files(repo_id: str) -> tuple[str, ...]:
    """Files of a built course repo (what the hub lists for it), as paths relative to the repo."""
    root = require(repo_id)
    return tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*")
                        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)))


def check_folder_matches_repo(folder: str | os.PathLike[str], repo_id: str) -> None:
    """Check a local folder (e.g. a `local_dir` download) holds every repo file as a real file with the same bytes."""
    folder, source = Path(folder), require(repo_id)
    for name in repo_files(repo_id):
        mine = folder / name
        if not mine.is_file():
            raise GradingCheckError(f"{mine} is missing: download every file of {repo_id} into {folder}.")
        if mine.is_symlink():
            raise GradingCheckError(f"{mine} is a link ({os.readlink(mine)}): an offline folder must hold real files.")
        if file_hashes(mine)[0] != file_hashes(source / name)[0]:
            raise GradingCheckError(f"{mine} differs from {repo_id}'s {name}: download it again.")


# ---------------------------------------------------------------- the course hub's log
def hub_stats(url: str | None = None) -> HubStats:
    """The request log of the course hub at `url` (default: this process's HF_ENDPOINT)."""
    url = url or os.environ.get("HF_ENDPOINT", "")
    try:
        return hub.stats(url)
    except HubUnreachableError as exc:
        raise GradingCheckError(f"The course hub at HF_ENDPOINT={url!r} did not answer: keep it running "
                                "(the setup cell starts it).") from exc


def weight_downloads(stats: HubStats, repo_id: str) -> dict[str, int]:
    """Full downloads of each weight file of `repo_id` in a hub log (0 if never; ranged reads and HEADs don't count)."""
    counts = {name: 0 for name in repo_files(repo_id) if name.endswith(formats.WEIGHT_FILES)}
    return counts | {item.path: item.full_downloads for item in stats.files
                     if item.repo_id == repo_id and item.path.endswith(formats.WEIGHT_FILES)}


def check_each_weight_downloaded_once(stats: HubStats, repo_id: str) -> None:
    """Check the hub sent each weight file of `repo_id` exactly once."""
    if wrong := {name: n for name, n in weight_downloads(stats, repo_id).items() if n != 1}:
        detail = ", ".join(f"{name} {n} time(s)" for name, n in sorted(wrong.items()))
        raise GradingCheckError(f"The hub sent {detail}; expected each weight file of {repo_id} once: "
                                "the first download fills the cache and every later load must reuse it.")


def sentinel_hub() -> HubHandle:
    """Start a private hub that serves no model and logs every request: a client that must stay offline
    points at it, and each request it sends shows up in `stats()` (and fails fast with a 404)."""
    return hub.start(root=scratch_dir("sentinel-hub-"), port=0)


# ---------------------------------------------------------------- the offline exercise
PROBE = '''\
"""Grading probe: report what a child process sees (same command line as offline_generate.py)."""
import json, os, sys
from huggingface_hub import constants

print("probe starting")
print(json.dumps({"offline": constants.HF_HUB_OFFLINE, "answer": "probe", "argv": sys.argv[1:],
                  "env_flag": os.environ.get("HF_HUB_OFFLINE")}))
'''


def write_probe(folder: str | os.PathLike[str]) -> Path:
    """Write a tiny script with the offline script's command line that reports the child's offline flag."""
    path = Path(folder) / "grading_probe.py"
    path.write_text(PROBE, encoding="utf-8")
    return path


# ---------------------------------------------------------------- watching a learner's script run
# Hidden tests draw from these with random.SystemRandom() (a learner's random.seed() cannot fix the draw): an
# answer typed in beforehand cannot match them.
QUESTIONS = (
    "What is the capital of Italy?", "What is the capital of Japan?", "What is the capital of Spain?",
    "What is the capital of Germany?", "What is the capital of Egypt?", "What is the capital of Canada?",
    "Name three colours of the rainbow.", "What do bees make?", "How many legs does a spider have?",
    "What is the opposite of cold?", "Which planet is closest to the sun?", "What language is spoken in Brazil?")


@dataclass(frozen=True)
class ScriptRun:
    """What the grading probe saw while a learner's script ran in a fresh process."""

    returncode: int
    hf_offline: bool | None  # huggingface_hub's own flag in that process
    jobs: tuple[dict, ...]  # per call of main(): returned, error, engines built, texts generated, hub requests
    expected: dict[str, str]  # question -> the grader's own engine's greedy answer (24 tokens)
    stderr: str

    def job(self, index: int = 0) -> dict:
        """The record of one call of main(); a run that crashed before it is a grading error."""
        if index >= len(self.jobs):
            raise GradingCheckError(f"The grader could not run your script (exit code {self.returncode}):\n"
                                    f"{self.stderr[-1500:]}")
        return self.jobs[index]


def _probe_command(script: str | os.PathLike[str], jobs: list[tuple[str, str]], *, offline: bool, endpoint: str,
                   hub_cache: str | os.PathLike[str] | None, reference: str | os.PathLike[str] | None = None
                   ) -> tuple[list[str], dict[str, str], Path]:
    """The probe's command line, its environment and the report file it writes (see `run_script`)."""
    report = scratch_dir("script-probe-") / "report.json"
    env = {**{k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}, "HF_ENDPOINT": endpoint,
           **({"HF_HUB_OFFLINE": "1"} if offline else {}),
           **({} if hub_cache is None else {"HF_HUB_CACHE": str(hub_cache)})}
    payload = json.dumps([{"model": str(m), "question": q} for m, q in jobs])
    argv = [sys.executable, str(_SCRIPT_PROBE), str(report), str(Path(script).resolve()), endpoint, payload]
    return argv + ([str(reference)] if reference else []), env, report


def run_script(script: str | os.PathLike[str], jobs: list[tuple[str, str]], *, offline: bool, endpoint: str,
               hub_cache: str | os.PathLike[str] | None = None, reference: str | os.PathLike[str] | None = None,
               timeout: float = 600) -> ScriptRun:
    """Run the script's `main(model, question)` for each job in one fresh process under the probe: `offline` sets
    HF_HUB_OFFLINE=1 (else unsets it), `endpoint` (HF_ENDPOINT) is a sentinel whose requests are counted per job.
    `ScriptRun.expected` holds each question's greedy answer from the `reference` folder, by the engine the script
    built from it (else by one the probe loads)."""
    argv, env, report = _probe_command(script, jobs, offline=offline, endpoint=endpoint, hub_cache=hub_cache,
                                       reference=reference)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if not report.is_file():
        return ScriptRun(done.returncode or 1, None, (), {}, done.stderr)
    seen = json.loads(report.read_text(encoding="utf-8"))
    return ScriptRun(done.returncode, seen["hf_offline"], tuple(seen["jobs"]), seen["expected"], done.stderr)


@dataclass
class OnlineRun:
    """A probed run of the script without HF_HUB_OFFLINE, started by `start_online`; `requests()` collects it."""

    child: subprocess.Popen
    sentinel: HubHandle
    before: int  # the sentinel's requests when it started
    deadline: float  # time.monotonic() after which it is stopped anyway

    def requests(self) -> int:
        """Stop the process at the sentinel's first request (or see it end); return the requests logged (0: none)."""
        try:
            while (self.child.poll() is None and self.sentinel.stats().requests == self.before
                   and time.monotonic() < self.deadline):
                time.sleep(0.1)
        finally:
            kill_tree(self.child.pid)
            self.child.wait()
        return self.sentinel.stats().requests - self.before


def start_online(script: str | os.PathLike[str], model: str, question: str, *, sentinel: HubHandle,
                 hub_cache: str | os.PathLike[str] | None = None, timeout: float = 600) -> OnlineRun:
    """Start the script's `main(model, question)` under the probe without HF_HUB_OFFLINE, HF_ENDPOINT a `sentinel`
    no other run reports to; return at once: it runs while the grader works. `requests()` collects it."""
    argv, env, _ = _probe_command(script, [(model, question)], offline=False, endpoint=sentinel.url,
                                  hub_cache=hub_cache)
    before = sentinel.stats().requests
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return OnlineRun(child, sentinel, before, time.monotonic() + timeout)


def check_engine_answered(run: ScriptRun, index: int, model: str | os.PathLike[str]) -> str:
    """Check call `index` of a probed run built a vLLM engine from `model` and returned its greedy answer and the
    real offline flag; return the answer."""
    job = run.job(index)
    if job["error"]:
        raise GradingCheckError(f"main({job['model']!r}, ...) raised {job['error']}")
    returned = job["returned"]
    if not isinstance(returned, dict) or not {"answer", "offline"} <= set(returned):
        raise GradingCheckError(f"main() should return {{'offline': ..., 'answer': ...}}; it returned {returned!r}")
    if not job["engines"]:
        raise GradingCheckError("main() built no vllm.LLM engine: load the model with vLLM inside main().")
    if not any(_same_model(engine, model) for engine in job["engines"]):
        raise GradingCheckError(f"main() loaded {job['engines']}, not the model it was given ({model}).")
    asked = [g for g in job["generated"] if job["question"] in g["prompt"] and _same_model(g["model"], model)]
    if not asked:
        raise GradingCheckError(f"The engine generated no answer to the question main() was given "
                                f"({job['question']!r}): ask that question, not one of your own.")
    if returned["answer"] not in [g["text"] for g in asked]:
        raise GradingCheckError(f"main() returned {returned['answer']!r}, but the engine generated "
                                f"{asked[-1]['text']!r}: return the text vLLM generated.")
    used = next(g["params"] for g in asked if g["text"] == returned["answer"])
    if used and (used.get("temperature") != 0 or used.get("max_tokens") != 24):
        raise GradingCheckError(f"The answer was generated with temperature={used.get('temperature')}, "
                                f"max_tokens={used.get('max_tokens')}: use SamplingParams(temperature=0, max_tokens=24).")
    expected = run.expected.get(job["question"])
    if expected is not None and returned["answer"] != expected:
        raise GradingCheckError(f"For {job['question']!r} greedy decoding gives {expected!r}; your script gave "
                                f"{returned['answer']!r}: one chat message, SamplingParams(temperature=0, max_tokens=24).")
    if returned["offline"] is not run.hf_offline:
        raise GradingCheckError(f"main() reported offline={returned['offline']!r}, but huggingface_hub in that "
                                f"process had HF_HUB_OFFLINE={run.hf_offline}: report constants.HF_HUB_OFFLINE.")
    return returned["answer"]


def _same_model(engine_model: str, model: str | os.PathLike[str]) -> bool:
    """Whether an engine's model (a folder, or the snapshot a repo id resolved to) is `model`."""
    engine_path, wanted = Path(engine_model), str(model)
    if engine_model == wanted:
        return True
    if Path(wanted).exists():
        return engine_path.exists() and engine_path.resolve() == Path(wanted).resolve()
    repo_folder = "models--" + wanted.replace("/", "--")
    return engine_path.parent.name == "snapshots" and engine_path.parent.parent.name == repo_folder


def cache_holding(repo_id: str) -> Path:
    """A new HF cache folder holding every file of `repo_id`, downloaded from a private course hub (then stopped)."""
    from huggingface_hub import snapshot_download
    cache = scratch_dir("graded-cache-")
    # activated too: huggingface_hub's side requests go to constants.ENDPOINT, maybe a watched sentinel
    with hub.start(port=0) as private, private.activate():  # leaving stops it: a port-0 hub is `owned`
        snapshot_download(repo_id, cache_dir=cache, endpoint=private.url)
    return cache


# ---------------------------------------------------------------- the quantization exercise
@dataclass(frozen=True)
class Remeasured:
    """One re-run of a learner's `measure()`, and what the grader saw meanwhile."""

    figures: dict  # what measure() returned
    timed: tuple  # ((n_prompts, max_tokens, repeats, warmup), rates) per tokens_per_second call
    checkpoints_logged: tuple[float, ...]  # `Checkpoint size` figures vLLM logged during the re-run
    rss_before_gib: float  # this process's RSS just before
    rss_peak_gib: float  # this process's peak RSS after (never less than the RSS at any moment in between)


def rerun_measure(namespace: dict, repo_id: str) -> Remeasured:
    """Call the learner's `measure()` on links to `repo_id`'s files under a folder name never seen (no typed-in
    figure fits), watching `tokens_per_second` in `namespace` (the kernel's globals) meanwhile."""
    import resource

    from .. import engine
    copy = scratch_dir("graded-") / "model-under-test"
    copy.mkdir()
    for item in require(repo_id).iterdir():  # the files the hub serves for it
        if not item.name.startswith("."):
            (copy / item.name).symlink_to(item.resolve())
    timed, real = [], namespace["tokens_per_second"]

    def watched_tokens_per_second(llm, n_prompts, max_tokens, repeats=3, warmup=1):
        rates = real(llm, n_prompts, max_tokens, repeats, warmup)
        timed.append(((n_prompts, max_tokens, repeats, warmup), list(rates)))
        return rates

    mark, before = len(engine._LOG_LINES), engine.rss_bytes()  # vLLM's log in this process
    namespace["tokens_per_second"] = watched_tokens_per_second
    try:
        with native_stderr_to_stdout():
            figures = namespace["measure"](str(copy))
    finally:
        namespace["tokens_per_second"] = real
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sizes = tuple(float(m.group(1)) for line in engine._LOG_LINES[mark:]
                  for m in [engine._CHECKPOINT_RE.search(line)] if m)
    return Remeasured(dict(figures), tuple(timed), sizes, before / 2**30, peak / 2**30)
