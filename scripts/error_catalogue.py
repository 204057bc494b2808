"""Print every bad input and fault the course handles, with the message its helpers really give.

Nothing here is canned: each entry is provoked for real (a course hub answering 404/401/403, a
closed port, an empty cache, real tmpfs disks that are read-only or filling up, real vLLM loads, a
real SIGINT mid-load) by a learner's direct call, with the scenario functions the tests use
(tests/faultlab.py); the message printed is the advice the notebook handler shows under the failed
cell (`diagnose.advise`). Each entry names the test that asserts it; tests/test_cell_errors.py
checks the handler itself in real kernels.

Usage:
    .venv/bin/python scripts/error_catalogue.py              # everything (~2 min on 2 cores)
    .venv/bin/python scripts/error_catalogue.py --skip-vllm  # without the entries that start vLLM
    .venv/bin/python scripts/error_catalogue.py --markdown   # for the README / docs

Needs the course models (`make models`); the disk entries need a tmpfs mount (root), else they say so.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "helpers"))

import faultlab as fl  # noqa: E402
from vllm_course import config  # noqa: E402

BAD = "tests/test_bad_inputs.py"
FAULTS = "tests/test_faults.py"


@dataclass
class Entry:
    """One catalogue line: what goes wrong, how it is provoked, and which test asserts the message."""

    key: str
    title: str
    test: str
    provoke: Callable[[Context], list[str]] | None = None
    note: str = ""
    vllm: bool = False


@dataclass
class Context:
    lab: fl.Lab
    workdir: Path


def _said(outcome: fl.Outcome) -> list[str]:
    if outcome.ok:
        extra = [f"warning: {w}" for w in outcome.warnings]
        return extra + [f"ok: {outcome.result}"] if not extra else extra
    return [f"{outcome.type}: {outcome.message}"]


def _one(scenario: Callable[[fl.Lab], fl.Outcome]) -> Callable[[Context], list[str]]:
    return lambda ctx: _said(scenario(ctx.lab))


def _many(*scenarios: Callable[[fl.Lab], fl.Outcome]) -> Callable[[Context], list[str]]:
    return lambda ctx: [line for s in scenarios for line in _said(s(ctx.lab))]


def _hub_unreachable(ctx: Context) -> list[str]:
    outcome = fl.hub_unreachable(ctx.lab)
    return _said(outcome) + [f"(snapshot_download gave up {outcome.seconds:.1f} s after the call)"]


def _gpu(ctx: Context) -> list[str]:
    lines = []
    for (method, dtype, capability, device), message in fl.gpu_messages():
        lines.append(f"[{method}, {dtype}, cc {capability}, {device}] "
                     f"{'GpuQuantizationError: ' + message if message else 'runs (no message)'}")
    return lines


def _truncated_in_vllm(ctx: Context) -> list[str]:
    import shutil

    from vllm_course import models

    broken = ctx.workdir / "truncated-model"
    broken.mkdir(exist_ok=True)
    for item in models.require(config.BASE_MODEL).iterdir():
        if item.is_file():
            shutil.copy2(item, broken / item.name)
    with open(broken / "model.safetensors", "r+b") as fh:
        fh.truncate(200_000_000)
    outcome = fl.through_vllm(ctx.lab, (("truncated", str(broken), {}),))
    name, message, cause = outcome.result["truncated"]
    return [f"{name}: {message}", f"(what vLLM raised, chained: {cause})"]


def _through_vllm(ctx: Context) -> list[str]:
    outcome = fl.through_vllm(ctx.lab)
    if not outcome.ok:
        return _said(outcome)
    return [f"[{case}] {name}: {message}  (chained: {cause})" for case, (name, message, cause) in outcome.result.items()]


def _cleanup(ctx: Context) -> list[str]:
    try:
        import vllm_course.cache  # noqa: F401
    except ImportError:
        return ["(cache.py is not in this checkout yet)"]
    return _said(fl.cleanup_outside_cache(ctx.lab))


def _traversal(ctx: Context) -> list[str]:
    import httpx

    lines = []
    for path in (f"/{fl.TINY}/resolve/main/..%2F..%2F..%2Fsecret.txt", f"/{fl.TINY}/resolve/main/.hidden"):
        response = httpx.get(ctx.lab.hub.url + path, trust_env=False)
        lines.append(f"GET {path} -> {response.status_code} {response.headers.get('X-Error-Message', '')}")
    return lines


def _hub_dies(comes_back: bool) -> Callable[[Context], list[str]]:
    def run(ctx: Context) -> list[str]:
        found = fl.hub_dies_mid_download(ctx.lab.root, ctx.workdir / f"dies-{comes_back}", comes_back=comes_back)
        stats = found["stats"]
        if comes_back:
            return _said(found["first"]) + [
                f"(resumed in the same call with Range {found['ranges'][0]}; sha256 right: "
                f"{found['blob_sha256'] == found['source_sha256']}; no half file in snapshots/)"]
        return _said(found["first"]) + [
            f"(left behind: {found['layout_after_first']['incomplete_blobs'] or 'no .incomplete'}, no weights in "
            f"snapshots/; next try: {stats.full_downloads} full download, sha256 right: "
            f"{found['blob_sha256'] == found['source_sha256']})"]
    return run


def _disk_fills(ctx: Context) -> list[str]:
    found = fl.disk_fills_during_download(ctx.lab.root, ctx.workdir / "disk-fills")
    layout = found["layout_after_first"]
    return _said(found["first"]) + [
        f"(left behind: {layout['incomplete_blobs'] or 'no .incomplete'}, broken links {len(layout['broken_links'])}; "
        f"after freeing space the retry's sha256 is right: {found['blob_sha256'] == found['source_sha256']})"]


def _interrupt(ctx: Context) -> list[str]:
    outcome = fl.interrupt_during_load(ctx.workdir)
    if not outcome.ok:
        return _said(outcome)
    found = outcome.result
    return [f"KeyboardInterrupt note: {note}" for note in found.get("notes", [])] + [
        f"(after it: {found['live_engines']} live engine, process groups left {found['process_groups_left']}, "
        f"RSS +{found['rss_growth_gib']:.2f} GiB; next load answered {found['answer']!r})"]


ENTRIES = [
    Entry("1", "Malformed model id", f"{BAD}::TestModelId", _one(fl.bad_model_id)),
    Entry("2", "Repo not found (a typo)", f"{BAD}::TestRepoNotFound", _one(fl.repo_not_found)),
    Entry("3", "Revision not found", f"{BAD}::TestRevisionNotFound", _one(fl.revision_not_found)),
    Entry("4", "Gated repo: no token (401), wrong token (403), listed token", f"{BAD}::TestGatedRepo",
          _many(fl.gated_no_token, fl.gated_wrong_token, fl.gated_right_token)),
    Entry("5", "Offline and not cached", f"{BAD}::TestOfflineNotCached", _one(fl.offline_not_cached)),
    Entry("6", "Hub unreachable without the offline flag", f"{BAD}::TestHubUnreachable", _hub_unreachable),
    Entry("7", "HF_HOME not writable (read-only tmpfs)", f"{BAD}::TestCacheNotWritable", _one(fl.cache_not_writable)),
    Entry("8", "Corrupted weight file: truncated, loaded by real vLLM", f"{BAD}::TestThroughVllm",
          _truncated_in_vllm, vllm=True),
    Entry("9", "Clean-up asked to delete outside the HF cache", "tests/test_cache.py::TestSafety", _cleanup,
          "owned by cache.py"),
    Entry("10", "GPU quantization / dtype mismatch (message builder; no GPU here)", f"{BAD}::TestGpuKernels", _gpu,
          "the real-GPU test is marked gpu and skips without CUDA"),
    Entry("V", "Bad inputs through the real LLM(...): id, path, 404, revision, gated, load_format, quantization",
          f"{BAD}::TestThroughVllm and tests/test_cell_errors.py", _through_vllm, vllm=True),
    Entry("F1a", "Hub process killed mid-download, back within seconds", f"{FAULTS}::TestHubDiesMidDownload",
          _hub_dies(True)),
    Entry("F1b", "Hub process killed mid-download, stays down", f"{FAULTS}::TestHubDiesMidDownload", _hub_dies(False)),
    Entry("F1c", "Transfer cut by the hub mid-file; downloading client killed mid-file",
          "tests/test_hub_clients.py::TestInterruptedDownloads", None, "hub owner's tests: resume within the call, "
          "no resume across processes in huggingface_hub 2.4, orphan .incomplete removed by `hf cache prune`"),
    Entry("F2", "Two processes downloading the same repo at once", "tests/test_hub_clients.py::TestConcurrentDownloads",
          None, "hub owner's test: one consistent cache, the file lock makes the second wait (1 weight download)"),
    Entry("F3", "Disk fills during a download (24 MB tmpfs, another writer)", f"{FAULTS}::TestDiskFillsDuringDownload",
          _disk_fills),
    Entry("F4", "KeyboardInterrupt (real SIGINT) during a load", f"{FAULTS}::TestInterruptDuringLoad", _interrupt,
          vllm=True),
    Entry("S1", "Hub path traversal / hidden files", "tests/test_hub_security.py::TestTraversal", _traversal,
          "hub owner's tests"),
    Entry("S2", "nbgrader feedback leaking hidden tests", "tests/test_nbgrader_pipeline.py::TestFeedback", None,
          "nbgrader owner's test: GenerateFeedback runs ClearHiddenTests (nbgrader_config.py)"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-vllm", action="store_true", help="skip the entries that start vLLM engines")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown list")
    parser.add_argument("--only", nargs="*", help="entry keys to run, e.g. 1 6 F3")
    args = parser.parse_args(argv)
    entries = [e for e in ENTRIES if not args.only or e.key in args.only]
    with tempfile.TemporaryDirectory(prefix="vllm-course-catalogue-") as tmp:
        workdir = Path(tmp)
        lab = fl.Lab(workdir / "lab")
        try:
            for entry in entries:
                lines = _run(entry, Context(lab, workdir), args.skip_vllm)
                _print(entry, lines, args.markdown)
        finally:
            lab.close()
    return 0


def _run(entry: Entry, ctx: Context, skip_vllm: bool) -> list[str]:
    if entry.provoke is None:
        return ["(not provoked here: see its test)"]
    if entry.vllm and skip_vllm:
        return ["(skipped: --skip-vllm)"]
    start = time.perf_counter()
    try:
        lines = entry.provoke(ctx)
    except fl.MountError as exc:
        lines = [f"(not provoked: {exc})"]
    except Exception as exc:  # noqa: BLE001 - e.g. the GPTQ repo not built yet: say so, go on
        lines = [f"(not provoked: {type(exc).__name__}: {exc})"]
    return lines + [f"[{time.perf_counter() - start:.1f} s]"]


def _print(entry: Entry, lines: list[str], markdown: bool) -> None:
    note = f" ({entry.note})" if entry.note else ""
    if markdown:
        print(f"- **{entry.key}. {entry.title}** — `{entry.test}`{note}")
        for line in lines:
            print(f"  - `{line}`" if not line.startswith(("(", "[")) else f"  - {line}")
    else:
        print(f"{entry.key}. {entry.title}{note}\n   test: {entry.test}")
        for line in lines:
            print(f"   {line}")
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
