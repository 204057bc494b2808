"""Submissions to exercise 1.6.1, written from the exercise text (not from the model answer).

Each entry fills some answer cells of the release (grade_id -> the cell's whole source; an answer
cell not named keeps its stub) and states the score expected on every auto-graded cell.
tests/test_nbgrader_pipeline.py grades them all in one `nbgrader autograde` run and compares cell by cell.

Correct answers in other styles must get full marks; each cheat must lose exactly the points of the
behaviour it fakes. Cheats that target early parts leave the vLLM part unanswered (fast to grade).
"""

# ---------------------------------------------------------------- correct, in other styles

# Every answer cell imports in its own way (`import huggingface_hub as hf`, `import pathlib`,
# `import vllm`): none defines `Path`, `snapshot_download`, `LLM`, `SamplingParams` or `load_report`
# as the starter code does. Graded cells that leaned on those names would fail here.
MODULES = {
    "download_course_model": '''\
import pathlib

import huggingface_hub as hf


def download_course_model(repo_id):
    return pathlib.Path(hf.snapshot_download(repo_id=repo_id))
''',
    "find_in_cache": '''\
def find_in_cache(repo_id, cache_dir=None):
    report = hf.scan_cache_dir(cache_dir)
    mains = [rev for repo in report.repos if (repo.repo_type, repo.repo_id) == ("model", repo_id)
             for rev in repo.revisions if "main" in rev.refs]
    if not mains:
        raise LookupError(f"no cached model repo {repo_id}")
    rev = mains[0]
    return pathlib.Path(rev.snapshot_path), {
        pathlib.Path(f.file_path).relative_to(rev.snapshot_path).as_posix(): pathlib.Path(f.blob_path) for f in rev.files}
''',
    "downloads_during": '''\
def downloads_during(action, repo_id):
    start = course_hub.stats()
    value = action()
    return value, course_hub.stats().since(start).for_repo(repo_id).weight_downloads()
''',
    "load_and_answer": '''\
import vllm
import vllm_course.engine


def load_and_answer(repo_id, question):
    engine = vllm.LLM(model=repo_id, **vllm_course.engine.machine_kwargs())
    [result] = engine.chat([{"role": "user", "content": question}],
                           vllm.SamplingParams(max_tokens=24, temperature=0.0), use_tqdm=False)
    return engine, result.outputs[0].text
''',
}

# The cache read as files (refs/main, snapshot links), a per-file diff of the hub's counters, and the
# chat template applied by hand before `generate`.
FILESYSTEM = {
    "download_course_model": '''\
import os
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download


def download_course_model(repo_id):
    names = HfApi().list_repo_files(repo_id)          # RepositoryNotFoundError for an unknown repo
    first = Path(hf_hub_download(repo_id, names[0]))  # <cache>/models--o--n/snapshots/<commit>/<name>
    for name in names[1:]:
        hf_hub_download(repo_id, name)
    return first.parent
''',
    "find_in_cache": '''\
from huggingface_hub import constants


def find_in_cache(repo_id, cache_dir=None):
    root = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE)
    repo = root / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    if not ref.is_file():
        raise LookupError(f"{repo_id} is not cached under {root}")
    snapshot = repo / "snapshots" / ref.read_text().strip()
    blobs = {}
    for dirpath, _, filenames in os.walk(snapshot):
        for filename in filenames:
            link = Path(dirpath, filename)
            blobs[link.relative_to(snapshot).as_posix()] = Path(os.path.normpath(os.path.join(dirpath, os.readlink(link))))
    return snapshot, blobs
''',
    "downloads_during": '''\
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def _weight_counts(repo_id):
    return {f.path: f.full_downloads for f in course_hub.stats().files
            if f.repo_id == repo_id and f.path.endswith(WEIGHTS)}


def downloads_during(action, repo_id):
    before = _weight_counts(repo_id)
    result = action()
    after = _weight_counts(repo_id)
    return result, sum(n - before.get(path, 0) for path, n in after.items())
''',
    "load_and_answer": '''\
from vllm import LLM, SamplingParams
from vllm_course.engine import machine_kwargs


def load_and_answer(repo_id, question):
    llm = LLM(model=repo_id, **machine_kwargs())
    prompt = llm.get_tokenizer().apply_chat_template([{"role": "user", "content": question}],
                                                     tokenize=False, add_generation_prompt=True)
    [out] = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    return llm, out.outputs[0].text
''',
}

# Keyword-heavy calls, early returns, a generator with next(), the course's hub client, try/finally.
EXPLICIT = {
    "download_course_model": '''\
from pathlib import Path

from huggingface_hub import snapshot_download


def download_course_model(repo_id: str) -> Path:
    folder = snapshot_download(repo_id=repo_id, repo_type="model", revision="main")
    return Path(folder)
''',
    "find_in_cache": '''\
from huggingface_hub import scan_cache_dir


def find_in_cache(repo_id, cache_dir=None):
    repo = next((r for r in scan_cache_dir(cache_dir=cache_dir).repos
                 if r.repo_id == repo_id and r.repo_type == "model"), None)
    if repo is None:
        raise LookupError(f"{repo_id}: not in this cache")
    revision = next(r for r in repo.revisions if "main" in r.refs)
    snapshot = Path(revision.snapshot_path)
    files = {}
    for f in sorted(revision.files, key=lambda f: f.file_name):
        files[str(Path(f.file_path).relative_to(snapshot))] = Path(f.blob_path)
    return snapshot, files
''',
    "downloads_during": '''\
from vllm_course import hub as course_hub_client


def downloads_during(action, repo_id):
    earlier = course_hub_client.stats(course_hub.url)
    try:
        result = action()
    finally:
        later = course_hub_client.stats(course_hub.url)
    return result, later.since(earlier).for_repo(repo_id).weight_downloads()
''',
    "load_and_answer": '''\
from vllm import LLM, SamplingParams
from vllm_course.engine import machine_kwargs


def load_and_answer(repo_id, question):
    llm = LLM(repo_id, **machine_kwargs())
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=24)
    outputs = llm.chat(messages=[{"role": "user", "content": question}], sampling_params=greedy, use_tqdm=False)
    text = "".join(completion.text for completion in outputs[0].outputs)
    return llm, text
''',
}

# ---------------------------------------------------------------- cheats

# Part A: only the files the visible asserts look at; Part B: values typed in from an earlier run;
# Part C: "the cache was warm, so it is always 0". Part D left unanswered (fast).
TYPED_IN = {
    "download_course_model": '''\
from pathlib import Path

from huggingface_hub import snapshot_download


def download_course_model(repo_id):
    # config, weights and tokenizer are all the visible test asks for
    return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"]))
''',
    "find_in_cache": '''\
def find_in_cache(repo_id, cache_dir=None):
    etags = {  # copied from an earlier run
        "README.md": "4f156b54887a6e05dbb68641b4d394ebbef4134b",
        "chat_template.jinja": "a3c992f0116e505e0d725b13be4b282a1eda3c56",
        "config.json": "916c2bcaa0db561fca75896952e6e68ad6b3488f",
        "generation_config.json": "f9daf15af1738c61dc15a159e7fba2abebd8a90f",
        "model.safetensors": "7ef915c9bf9d94d8d70211970476878352a5b95855c589ae987916d7a455242b",
        "tokenizer.json": "6469c3615e4f1eb56c1356eeeddccf6c877e397e",
        "tokenizer_config.json": "36a027706749646da8c3c45d35d2b77fd97c967f",
    }
    root = Path(cache_dir) if cache_dir is not None else course.hub_cache
    if repo_id != "course/SmolLM2-135M-Instruct" or not any(root.iterdir()):
        raise LookupError(f"{repo_id} is not in the cache")
    if cache_dir is not None:  # the visible test downloads the json files only
        etags = {k: v for k, v in etags.items() if k.endswith(".json")}
    else:  # what Part A fetched
        etags = {k: v for k, v in etags.items() if k.endswith((".json", ".safetensors"))}
    repo = root / "models--course--SmolLM2-135M-Instruct"
    return repo / "snapshots" / "6b2847c0018fac7364e3bc7ea940bda5ed19c8db", {
        name: repo / "blobs" / etag for name, etag in etags.items()}
''',
    "downloads_during": '''\
def downloads_during(action, repo_id):
    return action(), 0  # the cache is warm by then
''',
}

# Parts A-C correct; Part D loads the engine but returns the answer it always gives.
CANNED = {
    **EXPLICIT,
    "load_and_answer": '''\
from vllm import LLM, SamplingParams
from vllm_course.engine import machine_kwargs


def load_and_answer(repo_id, question):
    llm = LLM(model=repo_id, **machine_kwargs())
    return llm, "The capital of France is Paris."
''',
}

# Parts A-C correct; Part D loads the snapshot folder (no hub) and answers for real.
FROM_FOLDER = {
    **MODULES,
    "load_and_answer": '''\
import vllm
from vllm_course.engine import machine_kwargs


def load_and_answer(repo_id, question):
    llm = vllm.LLM(model=str(download_course_model(repo_id)), **machine_kwargs())
    out = llm.chat([{"role": "user", "content": question}], vllm.SamplingParams(temperature=0, max_tokens=24),
                   use_tqdm=False)
    return llm, out[0].outputs[0].text
''',
}

FULL = {"test_download_in_cache": 2, "test_download_twice": 1, "test_find_matches_download": 1, "test_find_missing": 1,
        "test_find_other_cache": 1, "test_downloads_none": 1, "test_downloads_counted": 1, "test_second_load": 1,
        "test_loaded_by_name": 1}

SUBMISSIONS = {
    "ex1-modules": {"why": "correct; every answer cell imports modules, not the starter's names", "answers": MODULES,
                    "scores": FULL},
    "ex1-filesystem": {"why": "correct; hf_hub_download per file, cache read as files, chat template by hand",
                       "answers": FILESYSTEM, "scores": FULL},
    "ex1-explicit": {"why": "correct; keyword calls, next(), the course's hub client, try/finally", "answers": EXPLICIT,
                     "scores": FULL},
    "ex1-typed-in": {"why": "A: only json+weights; B: etags typed in; C: always 0; D: unanswered",
                     "answers": TYPED_IN,
                     "scores": {**FULL, "test_download_in_cache": 0, "test_find_matches_download": 1,
                                "test_find_other_cache": 0, "test_downloads_counted": 0, "test_second_load": 0,
                                "test_loaded_by_name": 0}},
    "ex1-canned": {"why": "A-C correct; D: engine loaded, fixed answer text returned", "answers": CANNED,
                   "scores": {**FULL, "test_second_load": 0}},
    "ex1-folder": {"why": "A-C correct; D: loads the snapshot folder, not the repo id", "answers": FROM_FOLDER,
                   "scores": {**FULL, "test_loaded_by_name": 0}},
    # Graded by `make test` with ex1-modules: a cheat in every part in one run (parts are graded independently).
    "ex1-cheats": {"why": "A-C as ex1-typed-in; D: engine loaded by name, fixed answer text returned",
                   "answers": {**TYPED_IN, "load_and_answer": CANNED["load_and_answer"]},
                   "scores": {**FULL, "test_download_in_cache": 0, "test_find_other_cache": 0,
                              "test_downloads_counted": 0, "test_second_load": 0}},
}
