"""Submissions to exercise 1.6.2, written from the exercise text (not from the model answer).

Each entry fills some answer cells of the release (grade_id -> the cell's whole source; an answer
cell not named keeps its stub) and states the score expected on every auto-graded cell.
Part C's visible asserts read the run cell, which runs the script with the learner's own
`run_offline` (Part B); its hidden tests run the script themselves.
"""

SCRIPT_HEAD = '''\
%%writefile offline_generate.py
"""Load a local model folder with vLLM, offline, and print {"offline": ..., "answer": ...} as JSON."""
'''

# ---------------------------------------------------------------- correct, in other styles

# Module imports everywhere (no `Path`, `snapshot_download`, `sys`, `json` from the starter code);
# vLLM and huggingface_hub imported at the top of the script (the flag is in the environment already).
MODULES = {
    "predownload": '''\
import pathlib

import huggingface_hub


def predownload(repo_id, local_dir):
    target = pathlib.Path(local_dir)
    huggingface_hub.snapshot_download(repo_id, local_dir=target)
    return target
''',
    "offline_process": '''\
import json as _json
import os as _os
import subprocess as sp
import sys as _sys


def offline_env(base=None):
    return {**(_os.environ if base is None else base), "HF_HUB_OFFLINE": "1"}


def run_offline(script, *args, timeout=600):
    proc = sp.run([_sys.executable, str(script)] + [str(a) for a in args], env=offline_env(),
                  stdout=sp.PIPE, stderr=sp.PIPE, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{script} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return _json.loads(lines[-1])
''',
    "offline_script": SCRIPT_HEAD + '''\
import json
import sys

from vllm_course.engine import machine_kwargs
import huggingface_hub.constants
import vllm


def main(model_dir, question):
    engine = vllm.LLM(model=model_dir, **machine_kwargs())
    reply = engine.chat([{"role": "user", "content": question}],
                        vllm.SamplingParams(max_tokens=24, temperature=0.0), use_tqdm=False)
    return {"answer": reply[0].outputs[0].text, "offline": huggingface_hub.constants.HF_HUB_OFFLINE}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])))
''',
}

# The `hf` command line for the download, Popen for the child, the chat template applied by hand,
# and the engine freed before main() returns.
CLI = {
    "predownload": '''\
import subprocess
import sys
from pathlib import Path


def predownload(repo_id, local_dir):
    hf = Path(sys.executable).with_name("hf")  # the CLI of this venv; it inherits HF_ENDPOINT
    subprocess.run([str(hf), "download", repo_id, "--local-dir", str(local_dir)], check=True,
                   capture_output=True, text=True)
    return Path(local_dir)
''',
    "offline_process": '''\
import copy
import json
import os
import subprocess
import sys


def offline_env(base=None):
    env = copy.copy(dict(os.environ)) if base is None else dict(base)
    env.update(HF_HUB_OFFLINE="1")
    return env


def run_offline(script, *args, timeout=600):
    child = subprocess.Popen([sys.executable, str(script), *args], env=offline_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    out, err = child.communicate(timeout=timeout)
    if child.returncode != 0:
        raise RuntimeError("offline run failed:\\n" + "\\n".join(err.splitlines()[-20:]))
    return json.loads(out.rstrip("\\n").rsplit("\\n", 1)[-1])
''',
    "offline_script": SCRIPT_HEAD + '''\
import json
import sys

from vllm_course.engine import machine_kwargs


def main(model_dir, question):
    from huggingface_hub import constants
    from vllm import LLM, SamplingParams
    from vllm_course.engine import release

    llm = LLM(model=model_dir, **machine_kwargs())
    try:
        prompt = llm.get_tokenizer().apply_chat_template([{"role": "user", "content": question}],
                                                         tokenize=False, add_generation_prompt=True)
        text = llm.generate(prompt, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)[0].outputs[0].text
    finally:
        release(llm)
    return {"offline": constants.HF_HUB_OFFLINE, "answer": text}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
''',
}

# One file at a time with hf_hub_download, check_output, a main() that keeps its engine in a global.
EXPLICIT = {
    "predownload": '''\
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download


def predownload(repo_id, local_dir):
    local_dir = Path(local_dir)
    local_dir.mkdir(parents=True, exist_ok=True)
    for name in HfApi().list_repo_files(repo_id):
        hf_hub_download(repo_id, name, local_dir=local_dir)
    return local_dir
''',
    "offline_process": '''\
import json
import os
import subprocess
import sys


def offline_env(base=None):
    source = os.environ if base is None else base
    env = {key: value for key, value in source.items() if key != "HF_HUB_OFFLINE"}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_offline(script, *args, timeout=600):
    try:
        out = subprocess.check_output([sys.executable, str(script), *map(str, args)], env=offline_env(),
                                      stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{script} exited with {exc.returncode}: {exc.stderr.strip()[-1500:]}") from exc
    return json.loads(out.strip().split("\\n")[-1])
''',
    "offline_script": SCRIPT_HEAD + '''\
import json
import sys

from vllm_course.engine import machine_kwargs

ENGINES = {}


def main(model_dir: str, question: str) -> dict:
    from huggingface_hub import constants
    from vllm import LLM, SamplingParams

    if model_dir not in ENGINES:
        ENGINES[model_dir] = LLM(model=model_dir, **machine_kwargs())
    params = SamplingParams(temperature=0.0, max_tokens=24)
    [output] = ENGINES[model_dir].chat([{"role": "user", "content": question}], params, use_tqdm=False)
    answer = output.outputs[0].text
    return {"offline": bool(constants.HF_HUB_OFFLINE), "answer": answer}


if __name__ == "__main__":
    model_dir, question = sys.argv[1], sys.argv[2]
    print("answering", question)
    print(json.dumps(main(model_dir, question)))
''',
}

# ---------------------------------------------------------------- cheats

# Part A: the files copied from where the hub keeps them (no download); Part B: the script run in
# this kernel with the flag put in os.environ (the wrong process). Part C left unanswered.
WRONG_PROCESS = {
    "predownload": '''\
import shutil
from pathlib import Path

from vllm_course import config


def predownload(repo_id, local_dir):
    shutil.copytree(config.repo_path(repo_id), local_dir, dirs_exist_ok=True)
    return Path(local_dir)
''',
    "offline_process": '''\
import contextlib
import io
import json
import os
import runpy
import sys


def offline_env(base=None):
    env = dict(os.environ if base is None else base)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_offline(script, *args, timeout=600):
    """Faster: no new process, the flag set while the script runs."""
    saved_argv, out = sys.argv, io.StringIO()
    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.argv = [str(script), *map(str, args)]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise RuntimeError(f"{script} failed: {exc.code}") from None
    finally:
        sys.argv = saved_argv
        del os.environ["HF_HUB_OFFLINE"]
    return json.loads(out.getvalue().strip().splitlines()[-1])
''',
}

# Parts A and B correct; Part C reports the flag and the answer without running anything.
SELF_REPORTED = {
    **MODULES,
    "offline_script": SCRIPT_HEAD + '''\
import json
import sys


def main(model_dir, question):
    return {"offline": True, "answer": "The capital of France is Paris."}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
''',
}

# Parts A and B correct; Part C sets the flag inside the script, then answers for real.
FLAG_IN_SCRIPT = {
    **EXPLICIT,
    "offline_script": SCRIPT_HEAD + '''\
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: offline whoever runs it

from vllm_course.engine import machine_kwargs


def main(model_dir, question):
    from huggingface_hub import constants
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, **machine_kwargs())
    out = llm.chat([{"role": "user", "content": question}], SamplingParams(temperature=0, max_tokens=24),
                   use_tqdm=False)
    return {"offline": constants.HF_HUB_OFFLINE, "answer": out[0].outputs[0].text}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
''',
}

FULL = {"test_predownload_folder": 2, "test_predownload_twice": 1, "test_offline_env": 1, "test_run_offline": 1,
        "test_run_offline_errors": 1, "test_offline_answer": 2, "test_offline_no_requests": 2}
NO_C = {"test_offline_answer": 0, "test_offline_no_requests": 0}

SUBMISSIONS = {
    "ex2-modules": {"why": "correct; module imports, vLLM imported at the script's top", "answers": MODULES,
                    "scores": FULL},
    "ex2-cli": {"why": "correct; `hf download`, Popen, chat template by hand, engine released in main()",
                "answers": CLI, "scores": FULL},
    "ex2-explicit": {"why": "correct; hf_hub_download per file, check_output, engines kept in a dict",
                     "answers": EXPLICIT, "scores": FULL},
    "ex2-wrong-process": {"why": "A: copied from the hub's store, no download; B: script run in the kernel; C: unanswered",
                          "answers": WRONG_PROCESS,
                          "scores": {**FULL, "test_predownload_twice": 0, "test_run_offline": 0, **NO_C}},
    "ex2-self-reported": {"why": "A, B correct; C: main() returns offline=True and Paris without running",
                          "answers": SELF_REPORTED, "scores": {**FULL, **NO_C}},
    "ex2-flag-in-script": {"why": "A, B correct; C: the script sets HF_HUB_OFFLINE itself",
                           "answers": FLAG_IN_SCRIPT, "scores": {**FULL, "test_offline_no_requests": 0}},
    # Graded by `make test` with ex2-modules: a cheat in every part in one run (parts are graded independently).
    "ex2-cheats": {"why": "A, B as ex2-wrong-process; C: main() self-reports offline=True and Paris",
                   "answers": {**WRONG_PROCESS, "offline_script": SELF_REPORTED["offline_script"]},
                   "scores": {**FULL, "test_predownload_twice": 0, "test_run_offline": 0, **NO_C}},
}
