"""Bad inputs to a download or a load: each is provoked for real and must get one exact line of advice.

What `diagnose.advise()` says about the real exception is what the notebook handler shows under a
failed cell (tests/test_cell_errors.py checks the handler itself in real kernels). The course hub
serves the built course repos (hard-linked into a scratch root), a gated copy and two small repos;
every client runs in a fresh interpreter with its own HF_HOME (faultlab.py). The last class sends
bad inputs through the real `LLM(...)`.
"""

from __future__ import annotations

import re
import shutil

import pytest

import faultlab as fl
from vllm_course import config, diagnose, formats, machine
from vllm_course.build import require

BASE, BIN, GPTQ = config.BASE_MODEL, config.BIN_MODEL, config.GPTQ_MODEL
# Variable parts of a message, as regexes; everything else must match character for character.
_SLOTS = {"{PATH}": r"/\S+?", "{SHA}": r"[0-9a-f]{40}", "{HEX}": r"[0-9a-f]{12}", "{SIZE}": r"[\d.]+ [kMGT]?B",
          "{PORT}": r"\d+"}


def expect(outcome: fl.Outcome, error: str, template: str, *, cause: str | None = "any", **exact: str) -> None:
    """Assert the provoked call raised `error` (a CourseError) with exactly `template`'s text."""
    assert not outcome.ok, f"expected {error}, but the call succeeded: {outcome.result}"
    assert outcome.type == error, f"{outcome.type}: {outcome.message}\n{outcome.stderr}"
    assert "CourseError" in outcome.bases
    pattern = re.escape(template.format(**exact) if exact else template)
    for slot, regex in _SLOTS.items():
        pattern = pattern.replace(re.escape(slot), regex)
    assert re.fullmatch(pattern, outcome.message), f"\n got: {outcome.message}\nwant: {template}"
    assert "\n" not in outcome.message
    if cause != "any":
        assert outcome.cause == cause


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    require(BASE)
    started = fl.Lab(tmp_path_factory.mktemp("bad-inputs"))
    yield started
    started.close()


def _mount_or_skip(scenario, lab):
    try:
        return scenario(lab)
    except fl.MountError as exc:
        pytest.skip(f"needs a real small filesystem: {exc} (run as root, or where tmpfs mounts are allowed)")


class TestModelId:
    def test_is_a_malformed_id_explained(self, lab):
        """Does snapshot_download('course//SmolLM2 135M') get how a Hub id is written?"""
        expect(fl.bad_model_id(lab), "BadModelIdError",
               "model='course//SmolLM2 135M' is neither an existing folder nor a valid Hub repo id: write it as "
               "'org/name' (letters, digits, '-', '_', '.'), e.g. course/SmolLM2-135M-Instruct, or give the path "
               "of a model folder.", cause="HFValidationError")


class TestRepoNotFound:
    def test_does_a_typo_get_the_repo_it_meant(self, lab):
        """Does a 404 RepoNotFound name the endpoint and suggest the close course repo?"""
        expect(fl.repo_not_found(lab), "ModelNotFoundError",
               "course/SmolLM2-135M-Instrukt does not exist on {url} (404 RepoNotFound): check the spelling (course "
               "models: `python -m vllm_course models list`; did you mean course/SmolLM2-135M-Instruct?) or, for a "
               "private repo, log in with `hf auth login`.", cause="RepositoryNotFoundError", url=lab.hub.url)


class TestRevisionNotFound:
    def test_is_an_unknown_revision_named_with_what_to_pass(self, lab):
        """Does revision='v2.0' give 404 RevisionNotFound advice (branch, tag or full sha)?"""
        expect(fl.revision_not_found(lab), "ModelRevisionError",
               "course/SmolLM2-135M-Instruct has no revision 'v2.0' on {url} (404 RevisionNotFound): pass a branch, "
               "tag or full 40-character commit sha that the repo has, or leave revision= out for 'main'.",
               cause="RevisionNotFoundError", url=lab.hub.url)


class TestGatedRepo:
    GATED = ("course/SmolLM2-135M-Instruct-gated is gated and {why} on {url}): accept its terms on the repo page, "
             "then `hf auth login` or set HF_TOKEN (course hub: a token listed in the repo's .gated file).")

    def test_does_no_token_give_401_advice(self, lab):
        """Without a token, is the real 401 from the hub explained (log in or set HF_TOKEN)?"""
        expect(fl.gated_no_token(lab), "GatedModelError", self.GATED, cause="GatedRepoError",
               why="this request sent no token (401", url=lab.hub.url)

    def test_does_a_wrong_token_give_403_advice(self, lab):
        """With a token the repo does not list, is the real 403 explained?"""
        expect(fl.gated_wrong_token(lab), "GatedModelError", self.GATED, cause="GatedRepoError",
               why="the token sent was refused (403", url=lab.hub.url)

    def test_does_the_listed_token_pass(self, lab):
        """With a token from the repo's .gated file, does the download go through?"""
        outcome = fl.gated_right_token(lab)
        assert outcome.ok, outcome
        assert re.search(r"/hub/models--course--SmolLM2-135M-Instruct-gated/snapshots/[0-9a-f]{40}$", outcome.result)


class TestOfflineNotCached:
    def test_is_offline_without_a_cached_copy_explained(self, lab):
        """HF_HUB_OFFLINE=1 and an empty cache: does the message name the cache and both ways out?"""
        expect(fl.offline_not_cached(lab), "NotCachedError",
               "course/SmolLM2-135M-Instruct is not in the cache {PATH}/hub and HF_HUB_OFFLINE=1 forbids downloading "
               "it: download it once while online (`hf download course/SmolLM2-135M-Instruct`), or unset "
               "HF_HUB_OFFLINE and restart the kernel.", cause="LocalEntryNotFoundError")


class TestHubUnreachable:
    def test_is_a_stopped_hub_explained_in_seconds(self, lab):
        """A closed port and no offline flag: is the endpoint named with both ways out, in seconds
        (snapshot_download does not retry a refused connection; measured 0.1 s)?"""
        outcome = fl.hub_unreachable(lab)
        expect(outcome, "HubUnreachableError",
               "HF_ENDPOINT=http://127.0.0.1:{PORT} does not answer (connection refused) and HF_HUB_OFFLINE is not "
               "set: start the course hub (`python -m vllm_course hub start`), or set HF_HUB_OFFLINE=1 before "
               "importing vllm/huggingface_hub to load from the cache.", cause="LocalEntryNotFoundError")
        assert outcome.seconds < 5


class TestCacheNotWritable:
    def test_is_a_read_only_hf_home_explained(self, lab):
        """Straight into snapshot_download with HF_HOME on a read-only tmpfs (root ignores chmod, not a
        read-only mount): is the real EROFS OSError explained?"""
        outcome = _mount_or_skip(fl.cache_not_writable, lab)
        expect(outcome, "CacheNotWritableError",
               "{PATH}/read-only-disk/hf is not writable (Read-only file system), so course/SmolLM2-135M-Instruct "
               "cannot be downloaded into the HF cache: point HF_HOME (or HF_HUB_CACHE) at a writable folder before "
               "importing huggingface_hub or vllm, or set HF_HUB_OFFLINE=1 to use only what is cached.",
               cause="OSError")


class TestGpuKernels:
    """The rules are vLLM 0.32's (machine.py); the messages are built by a pure function, so they are checked here on CPU."""

    @pytest.mark.parametrize(("case", "message"), [
        (("gptq", "bfloat16", 70, "Tesla V100"),
         "quantization='gptq' on Tesla V100 (compute capability 7.0) can only use vLLM's Exllama kernel, which takes "
         "float16 activations only (Marlin needs 7.5+, bfloat16 needs 8.0+): pass dtype='float16'."),
        (("awq", "float16", 70, "Tesla V100"),
         "quantization='awq' needs compute capability 7.5 or higher in vLLM 0.32 but Tesla V100 is 7.0: load the "
         "unquantized model (course/SmolLM2-135M-Instruct) or use a newer GPU."),
        (("gptq", "float32", 90, "NVIDIA H100"),
         "quantization='gptq' runs 4-bit kernels that take float16 or bfloat16 activations, not float32: pass "
         "dtype='float16' (or 'auto')."),
        ((None, "bfloat16", 75, "Tesla T4"),
         "dtype='bfloat16' needs compute capability 8.0 or higher (Ampere) but Tesla T4 is 7.5: pass dtype='float16'."),
        (("gptq", "float16", 70, "Tesla V100"), None),
        (("gptq_marlin", "bfloat16", 86, "NVIDIA A10"), None),
        (("awq", "bfloat16", None, "cpu"), None),
    ])
    def test_does_each_combination_get_the_kernels_reason(self, case, message):
        """Does each (method, dtype, capability) get vLLM's real constraint, or None when it runs?"""
        assert machine.gpu_quantization_problem(*case) == message

    def test_do_the_rules_match_the_installed_vllm(self):
        """Are the capabilities and dtypes the messages quote the ones vLLM 0.32's kernels declare?"""
        import torch
        from vllm.model_executor.kernels.linear.mixed_precision.exllama import ExllamaLinearKernel
        from vllm.model_executor.kernels.linear.mixed_precision.marlin import MarlinLinearKernel
        from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig
        from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig

        assert MarlinLinearKernel.get_min_capability() == machine.MARLIN_MIN_CAPABILITY
        assert ExllamaLinearKernel.get_min_capability() == machine.METHOD_MIN_CAPABILITY["gptq"]
        assert AutoGPTQConfig.get_min_capability() == machine.METHOD_MIN_CAPABILITY["gptq"]
        assert AutoAWQConfig.get_min_capability() == machine.METHOD_MIN_CAPABILITY["awq"]
        for cls in (AutoGPTQConfig, AutoAWQConfig):
            assert cls.get_supported_act_dtypes() == [torch.float16, torch.bfloat16]

    @pytest.mark.gpu
    def test_does_this_gpu_refuse_float32_gptq_in_vllm(self):
        """On a real GPU: does vLLM refuse dtype=float32 for GPTQ, and is it explained with this GPU's rule?"""
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False (the CPU checks above cover the messages)")
        if not (config.repo_path(GPTQ) / "config.json").is_file():
            pytest.skip(f"{GPTQ} is not built (`make models` builds it)")
        from vllm import LLM

        gptq_model = require(GPTQ)

        with pytest.raises(Exception) as info:
            LLM(model=str(gptq_model), dtype="float32")
        advice = diagnose.advise(info.value)
        assert type(advice).__name__ == "GpuQuantizationError"
        assert str(advice) == machine.gpu_quantization_problem("gptq", "float32", 90)


@pytest.mark.slow
class TestThroughVllm:
    def test_does_each_real_vllm_failure_get_its_advice(self, lab, tmp_path):
        """The real LLM(...) for each bad input (and a truncated weight file): is what vLLM raised
        (or transformers inside it) explained in one line?"""
        broken = tmp_path / "truncated"
        broken.mkdir()
        for item in require(BASE).iterdir():
            if item.is_file():
                shutil.copy2(item, broken / item.name)
        with open(broken / "model.safetensors", "r+b") as fh:
            fh.truncate(200_000_000)
        cases = fl.VLLM_CASES + (("truncated", str(broken), {}),) + (fl.GPTQ_VLLM_CASES if fl.gptq_built() else ())
        outcome = fl.through_vllm(lab, cases)
        assert outcome.ok, outcome
        seen = outcome.result
        url = lab.hub.url
        assert seen["bad id"][:2] == ["BadModelIdError", (
            "model='course//SmolLM2 135M' is neither an existing folder nor a valid Hub repo id: write it as "
            "'org/name' (letters, digits, '-', '_', '.'), e.g. course/SmolLM2-135M-Instruct, or give the path of a "
            "model folder.")]
        assert seen["missing path"][:2] == ["LocalModelError", (
            "/no/such/model-folder does not exist: check the path, or pass a Hub repo id such as "
            "course/SmolLM2-135M-Instruct.")]
        assert seen["not found"][:2] == ["ModelNotFoundError", (
            f"course/SmolLM2-135M-Instrukt does not exist on {url} (404 RepoNotFound): check the spelling (course "
            f"models: `python -m vllm_course models list`; did you mean {BASE}?) or, for a private repo, log in with "
            "`hf auth login`.")]
        assert seen["revision"][:2] == ["ModelRevisionError", (
            f"{BASE} has no revision 'v2.0' on {url} (404 RevisionNotFound): pass a branch, tag or full 40-character "
            "commit sha that the repo has, or leave revision= out for 'main'.")]
        assert seen["gated"][:2] == ["GatedModelError", (
            f"{fl.GATED} is gated and this request sent no token (401 on {url}): accept its terms on the repo page, "
            "then `hf auth login` or set HF_TOKEN (course hub: a token listed in the repo's .gated file).")]
        assert seen["load_format"][:2] == ["WeightFormatError", formats.weight_format_message(
            f"{BIN} on {url}", "pt", ["pytorch_model.bin"])]
        assert seen["quantization"][:2] == ["QuantizationMismatchError", diagnose.quantization_message("gptq", BASE, None)]
        assert seen["truncated"][:2] == ["CorruptedWeightsError", (
            f"{broken / 'model.safetensors'} is corrupted (200000000 B on disk, its header describes 269060552 B: "
            "truncated or padded): copy or convert the model into that folder again.")]
        # what vLLM (or transformers inside it) really raised
        chained = {"bad id": "OSError", "missing path": "OSError", "not found": "OSError", "revision": "OSError", "gated": "OSError",
                   "load_format": "RuntimeError", "quantization": "ValidationError", "truncated": "SafetensorError"}
        if fl.gptq_built():  # vLLM's own GPTQ checks run on CPU too: the quant method, then the dtype
            assert seen["awq on gptq"][:2] == ["QuantizationMismatchError", diagnose.quantization_message(
                "awq", GPTQ, "gptq")]
            assert seen["gptq float32"][:2] == ["GpuQuantizationError", (
                "quantization='gptq' runs 4-bit kernels that take float16 or bfloat16 activations, not float32: pass "
                "dtype='float16' (or 'auto').")]
            chained.update({"awq on gptq": "ValidationError", "gptq float32": "ValidationError"})
        assert {name: v[2] for name, v in seen.items()} == chained
