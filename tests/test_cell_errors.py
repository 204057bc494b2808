"""A learner's own vLLM / huggingface_hub call fails in a notebook cell: what does the cell show?

Real kernels (nbclient), real vLLM, the real huggingface_hub client and a real course hub (the
lab of faultlab.py: the built course repos, a gated copy, a local folder without weights). Each
mistake is typed in its own cell, as a learner would, after `setup()` registered the handler.
Every failed cell must still be an error (the notebook stops there), show two frames (the
learner's line and the library line that raised) and end with one exact line of advice.

Two kernels: one online against the lab's hub, one started with HF_HUB_OFFLINE=1 and an empty
cache (huggingface_hub reads the flag once, at import), run without allow_errors to check that
the run really stops at the failed cell.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest

import faultlab as fl
from vllm_course import cell_errors, config
from vllm_course.build import require

BASE, BIN, GPTQ = config.BASE_MODEL, config.BIN_MODEL, config.GPTQ_MODEL
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

SETUP = """\
from vllm_course.course import setup
course = setup(start_hub=False)
course = setup(start_hub=False)   # run twice, as a learner re-running the first cell does
from vllm import LLM
from huggingface_hub import snapshot_download
from vllm_course.engine import load_report, machine_kwargs
print(course.quant.isa, course.quant.w4a16, get_ipython().custom_exceptions)
"""

# name: the cell a learner types (each makes one real mistake)
MISTAKES = {
    "typo": 'with load_report() as report:\n    llm = LLM(model="course/SmolLM2-135M-Instrukt", **machine_kwargs())',
    "bad id": 'LLM(model="course//SmolLM2 135M", **machine_kwargs())',
    "load_format": f'LLM(model="{BIN}", load_format="pt", **machine_kwargs())',
    "awq on gptq": f'LLM(model="{GPTQ}", quantization="awq", **machine_kwargs())',
    "gptq on bf16": f'LLM(model="{BASE}", quantization="gptq", **machine_kwargs())',
    "revision": f'snapshot_download("{BASE}", revision="v2.0")',
    "gated": f'snapshot_download("{fl.GATED}")',
    "no weights": 'LLM(model=NO_WEIGHTS, **machine_kwargs())',
    "missing kernel": (f'llm = LLM(model="{GPTQ}", **machine_kwargs(dtype="bfloat16"))\n'
                       'llm.chat([{"role": "user", "content": "What is the capital of France?"}], use_tqdm=False)'),
    "name error": "LLM(model=undefined_name)",
}

# What each mistake's advice must say, word for word ({url}: the lab's hub, {folder}: NO_WEIGHTS).
ADVICE = {
    "typo": "course/SmolLM2-135M-Instrukt does not exist on {url} (404 RepoNotFound): check the spelling (course "
            "models: `python -m vllm_course models list`; did you mean course/SmolLM2-135M-Instruct?) or, for a "
            "private repo, log in with `hf auth login`.",
    "bad id": "model='course//SmolLM2 135M' is neither an existing folder nor a valid Hub repo id: write it as "
              "'org/name' (letters, digits, '-', '_', '.'), e.g. course/SmolLM2-135M-Instruct, or give the path of a "
              "model folder.",
    "load_format": "load_format='pt' reads *.pt but course/SmolLM2-135M-Instruct-bin on {url} has pytorch_model.bin: "
                   "use load_format='auto' or convert the weights.",
    "awq on gptq": "quantization='awq' contradicts course/SmolLM2-135M-Instruct-GPTQ-Int4: its config.json says "
                   "quant_method='gptq': drop quantization= (vLLM reads it from config.json) or pass "
                   "quantization='gptq'.",
    "gptq on bf16": "quantization='gptq' contradicts course/SmolLM2-135M-Instruct: its config.json has no "
                    "quantization_config (an unquantized checkpoint): drop quantization= or load a gptq checkpoint "
                    "such as course/SmolLM2-135M-Instruct-GPTQ-Int4.",
    "revision": "course/SmolLM2-135M-Instruct has no revision 'v2.0' on {url} (404 RevisionNotFound): pass a branch, "
                "tag or full 40-character commit sha that the repo has, or leave revision= out for 'main'.",
    "gated": "course/SmolLM2-135M-Instruct-gated is gated and this request sent no token (401 on {url}): accept its "
             "terms on the repo page, then `hf auth login` or set HF_TOKEN (course hub: a token listed in the repo's "
             ".gated file).",
    "no weights": "{folder} is not a loadable model folder: it lacks weights (*.safetensors, *.bin or *.pt); copy the "
                  "whole repo there (`hf download <org/name> --local-dir {folder}`) or pass the Hub repo id instead.",
    "missing kernel": "course/SmolLM2-135M-Instruct-GPTQ-Int4 (gptq 4-bit) cannot run on this AVX2 CPU: vllm._C_AVX2 "
                      "has no cpu_gemm_wna16 op: GPTQ/AWQ load but fail at the first forward pass; use the W8A8 model, "
                      "or a CPU with AVX-512, or a GPU (course.models.quantized = course/SmolLM2-135M-Instruct-W8A8 "
                      "runs here).",
    "offline": "course/SmolLM2-135M-Instruct is not in the cache {hub_cache} and HF_HUB_OFFLINE=1 forbids downloading "
               "it: download it once while online (`hf download course/SmolLM2-135M-Instruct`), or unset "
               "HF_HUB_OFFLINE and restart the kernel.",
}

# The library frame that really raised each one (the second and last frame shown).
RAISED_IN = {
    "typo": "transformers/utils/hub.py", "bad id": "transformers/utils/hub.py",
    "load_format": "vllm/model_executor/model_loader/default_loader.py",
    "awq on gptq": "pydantic/_internal/_dataclasses.py", "gptq on bf16": "pydantic/_internal/_dataclasses.py",
    "revision": "huggingface_hub/utils/_http.py", "gated": "huggingface_hub/file_download.py",
    "no weights": "vllm/model_executor/model_loader/default_loader.py", "missing kernel": "torch/_ops.py",
    "offline": "huggingface_hub/_snapshot_download.py",
}


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells], metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def _kernel_env(lab: fl.Lab, course_home: Path, *, offline: bool = False) -> dict[str, str]:
    """The kernel's environment: its own course home (the built repos linked in), the lab's hub."""
    course_home.mkdir(parents=True)
    (course_home / "repos").symlink_to(config.repos_dir())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VLLM_COURSE_"))}
    env.update(VLLM_COURSE_HOME=str(course_home), HF_ENDPOINT=lab.hub.url, HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1", NO_COLOR="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory):
    """Run both notebooks once; yield {name: cell} plus the lab's URL and paths."""
    require(BASE)
    work = tmp_path_factory.mktemp("cell-errors")
    lab = fl.Lab(work / "lab")
    try:
        no_weights = work / "no-weights"
        no_weights.mkdir()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(require(BASE) / name, no_weights / name)
        names = list(MISTAKES)
        online = _notebook([SETUP + f"NO_WEIGHTS = {str(no_weights)!r}", *MISTAKES.values()])
        nbclient.NotebookClient(online, timeout=300, kernel_name="python3", allow_errors=True).execute(
            env=_kernel_env(lab, work / "home-online"), cwd=str(work))
        offline = _notebook([SETUP, f'LLM(model="{BASE}", **machine_kwargs())', 'print("not reached")'])
        stopped = None
        try:  # no allow_errors: the failed cell must stop the run, as it stops `Run All`
            nbclient.NotebookClient(offline, timeout=300, kernel_name="python3").execute(
                env=_kernel_env(lab, work / "home-offline", offline=True), cwd=str(work))
        except nbclient.exceptions.CellExecutionError as exc:
            stopped = exc
        cells = dict(zip(["setup", *names], online.cells))
        cells.update({"offline setup": offline.cells[0], "offline": offline.cells[1], "after offline": offline.cells[2]})
        yield {"cells": cells, "stopped": stopped, "url": lab.hub.url, "folder": str(no_weights),
               "hub_cache": str(work / "home-offline" / "hf" / "hub")}
    finally:
        lab.close()


def _error(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, f"expected the cell to fail:\n{cell.source}\n{cell.outputs}"
    return errors[0]


def _shown(cell: nbformat.NotebookNode) -> list[str]:
    return _ANSI.sub("", "\n".join(_error(cell).traceback)).splitlines()


def assert_explained(kernels: dict, name: str, ename: str) -> None:
    """The cell failed with the real exception, two frames, and the exact advice as its last line."""
    cell = kernels["cells"][name]
    error = _error(cell)
    assert error.ename == ename, error.evalue
    shown = _shown(cell)
    advice = "vllm_course: " + ADVICE[name].format(**kernels)
    assert shown[-1] == advice, "\n".join(shown)
    assert sum(line.startswith("Cell In[") for line in shown) == 1, "\n".join(shown)
    frames = [line for line in shown if line.startswith("File ")]
    assert len(frames) == 1 and RAISED_IN[name] in frames[0], "\n".join(shown)
    assert any(line.endswith("library frames hidden by vllm_course: %tb shows them all]") for line in shown)
    assert any(line.startswith(f"{ename}: ") for line in shown), "the real exception is shown"
    assert len(shown) < 45, f"{len(shown)} lines: not short\n" + "\n".join(shown)


class TestSetup:
    def test_does_setup_register_one_handler_even_when_run_twice(self, kernels):
        """Two setup() calls in one kernel: one handler for Exception, and one advice line per error?"""
        setup_out = "".join(o.get("text", "") for o in kernels["cells"]["setup"].outputs)
        assert "(<class 'Exception'>,)" in setup_out, setup_out
        assert sum(line.startswith("vllm_course: ") for line in _shown(kernels["cells"]["typo"])) == 1

    def test_is_nothing_registered_outside_ipython(self):
        """In a plain Python process (this one) is there no shell to register in?"""
        assert cell_errors.register() is False


class TestRepoMistakes:
    def test_typo_in_the_repo_id_inside_load_report(self, kernels):
        """LLM(model="course/SmolLM2-135M-Instrukt") in the lessons' `with load_report()`: 404 explained?"""
        assert_explained(kernels, "typo", "OSError")

    def test_malformed_repo_id(self, kernels):
        """LLM(model="course//SmolLM2 135M"): how a Hub id is written?"""
        assert_explained(kernels, "bad id", "OSError")

    def test_missing_revision(self, kernels):
        """snapshot_download(..., revision="v2.0"): what revision= takes?"""
        assert_explained(kernels, "revision", "RevisionNotFoundError")

    def test_gated_repo_without_a_token(self, kernels):
        """snapshot_download of the repo with a .gated file, no token: the real 401 explained?"""
        assert_explained(kernels, "gated", "GatedRepoError")


class TestLoadMistakes:
    def test_load_format_that_matches_no_file(self, kernels):
        """LLM(model=<the -bin repo>, load_format="pt"): the repo's real weight file named?"""
        assert_explained(kernels, "load_format", "RuntimeError")

    def test_awq_on_the_gptq_checkpoint(self, kernels):
        """quantization="awq" on the GPTQ repo: vLLM's ValidationError explained with the config's method?"""
        assert_explained(kernels, "awq on gptq", "ValidationError")

    def test_gptq_on_the_unquantized_checkpoint(self, kernels):
        """quantization="gptq" on the bf16 repo: is "no quantization_config" said?"""
        assert_explained(kernels, "gptq on bf16", "ValidationError")

    def test_local_folder_without_weights(self, kernels):
        """A folder with config and tokenizer but no weights: is the missing part named (not load_format)?"""
        assert_explained(kernels, "no weights", "RuntimeError")

    def test_offline_load_of_a_model_not_cached(self, kernels):
        """HF_HUB_OFFLINE=1 from the kernel's start, empty cache: the cache and both ways out named?"""
        assert_explained(kernels, "offline", "LocalEntryNotFoundError")

    def test_missing_kernel_for_4bit_on_this_cpu(self, kernels):
        """GPTQ in bfloat16: on AVX2 the first chat() raises AttributeError (no cpu_gemm_wna16): is the
        advice machine.quant_support()'s? Elsewhere the model runs and there is nothing to explain."""
        isa, w4a16, _ = "".join(o.get("text", "") for o in kernels["cells"]["setup"].outputs).split(" ", 2)
        cell = kernels["cells"]["missing kernel"]
        if w4a16 == "True":
            assert not [o for o in cell.outputs if o.output_type == "error"], "it runs on this ISA"
            pytest.skip(f"{isa}: vLLM's kernel library here has cpu_gemm_wna16, the GPTQ model runs (checked)")
        assert isa == "AVX2"
        assert_explained(kernels, "missing kernel", "AttributeError")


class TestNotSwallowed:
    def test_does_the_failed_cell_stop_the_run(self, kernels):
        """Without allow_errors, does nbclient stop at the explained cell (as Run All does)?"""
        assert kernels["stopped"] is not None
        assert kernels["stopped"].ename == "LocalEntryNotFoundError"
        assert kernels["cells"]["after offline"].outputs == []

    def test_does_the_learners_own_error_keep_ipythons_traceback(self, kernels):
        """A NameError in the learner's code: IPython's normal traceback, no advice line?"""
        cell = kernels["cells"]["name error"]
        assert _error(cell).ename == "NameError"
        shown = _shown(cell)
        assert shown[-1] == "NameError: name 'undefined_name' is not defined"
        assert not any("vllm_course" in line for line in shown)
