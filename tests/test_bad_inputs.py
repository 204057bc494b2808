"""Bad inputs to a load or a download: each is provoked for real and must give one exact line of advice.

The course hub serves the built course repos (hard-linked into a scratch root), a gated copy and
two small repos; every client runs in a fresh interpreter with its own HF_HOME (faultlab.py). The
last class sends the same bad inputs through the real `LLM(...)` and checks that `diagnosed()`
turns what vLLM raises into the same message as the pre-flight check.
"""

from __future__ import annotations

import re
import shutil
import warnings

import pytest

import faultlab as fl
from vllm_course import config, diagnose, models
from vllm_course.errors import StaleEnvWarning

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
    models.require(BASE)
    started = fl.Lab(tmp_path_factory.mktemp("bad-inputs"))
    yield started
    started.close()


def _mount_or_skip(scenario, lab):
    try:
        return scenario(lab)
    except fl.MountError as exc:
        pytest.skip(f"needs a real small filesystem: {exc} (run as root, or where tmpfs mounts are allowed)")


class TestModelId:
    def test_is_a_malformed_id_refused_before_any_request(self, lab):
        """Does 'course//SmolLM2 135M' fail at once with how a Hub id is written?"""
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
        """With a token from the repo's .gated file, does pre-flight pass?"""
        outcome = fl.gated_right_token(lab)
        assert outcome.ok, outcome
        assert outcome.result.startswith(f"course/SmolLM2-135M-Instruct-gated: ready to load from {lab.hub.url}, "
                                         "weights model.safetensors, to download ")


class TestOfflineNotCached:
    def test_is_offline_without_a_cached_copy_explained(self, lab):
        """HF_HUB_OFFLINE=1 and an empty cache: does the message name the cache and both ways out?"""
        expect(fl.offline_not_cached(lab), "NotCachedError",
               "course/SmolLM2-135M-Instruct is not in the cache {PATH}/hub and HF_HUB_OFFLINE=1 forbids downloading "
               "it: download it once while online (`hf download course/SmolLM2-135M-Instruct`), or unset "
               "HF_HUB_OFFLINE and restart the kernel.", cause="LocalEntryNotFoundError")


class TestHubUnreachable:
    def test_is_a_stopped_hub_reported_in_seconds_not_minutes(self, lab):
        """A closed port and no offline flag: is it reported in under 5 s (not ~100 s of retries)?"""
        outcome = fl.hub_unreachable(lab)
        expect(outcome, "HubUnreachableError",
               "HF_ENDPOINT=http://127.0.0.1:{PORT} does not answer (connection refused) and HF_HUB_OFFLINE is not "
               "set: start the course hub (`python -m vllm_course hub start`), or set HF_HUB_OFFLINE=1 before "
               "importing vllm/huggingface_hub to load from the cache.", cause="ConnectError")
        assert outcome.seconds < 5


class TestLoadFormat:
    def test_does_pt_on_a_bin_repo_list_the_repos_weights(self, lab):
        """load_format='pt' on the -bin repo: does the message name the repo and the file it does have?"""
        expect(fl.load_format_mismatch(lab), "WeightFormatError",
               "load_format='pt' reads *.pt but course/SmolLM2-135M-Instruct-bin on {url} has pytorch_model.bin: use "
               "load_format='auto' or convert the weights.", url=lab.hub.url)


class TestQuantizationMismatch:
    def test_is_gptq_on_an_unquantized_checkpoint_refused(self, lab):
        """quantization='gptq' on the bf16 repo: does it say config.json has no quantization_config?"""
        expect(fl.quantization_unquantized(lab), "QuantizationMismatchError",
               "quantization='gptq' contradicts course/SmolLM2-135M-Instruct: its config.json has no "
               "quantization_config (an unquantized checkpoint): drop quantization= or load a gptq checkpoint such as "
               "course/SmolLM2-135M-Instruct-GPTQ-Int4.")

    def test_is_awq_on_a_gptq_checkpoint_refused(self, lab):
        """quantization='awq' on the GPTQ repo: does it quote the checkpoint's quant_method?"""
        if not (models.repo_path(GPTQ) / "config.json").is_file():
            pytest.skip(f"{GPTQ} is not built (`make models` builds it)")
        expect(fl.quantization_other_method(lab), "QuantizationMismatchError",
               "quantization='awq' contradicts course/SmolLM2-135M-Instruct-GPTQ-Int4: its config.json says "
               "quant_method='gptq': drop quantization= (vLLM reads it from config.json) or pass quantization='gptq'.")


class TestLocalFolder:
    def test_does_an_incomplete_folder_name_each_missing_part(self, lab):
        """A folder with only model.safetensors: are config.json and the tokenizer named?"""
        expect(fl.incomplete_folder(lab), "LocalModelError",
               "{PATH}/incomplete-model is not a loadable model folder: it lacks config.json and a tokenizer "
               "(tokenizer.json, tokenizer.model or vocab.json); copy the whole repo there (`hf download <org/name> "
               "--local-dir {PATH}/incomplete-model`) or pass the Hub repo id instead.", cause="LocalModelError")

    def test_is_a_missing_path_not_mistaken_for_a_repo_id(self, tmp_path):
        """A path that does not exist: is it reported as a path, not as a malformed Hub id?"""
        with pytest.raises(Exception) as info:
            diagnose.preflight(tmp_path / "no-such-model")
        assert type(info.value).__name__ == "LocalModelError"
        assert str(info.value) == (f"{tmp_path / 'no-such-model'} does not exist: check the path, or pass a Hub repo "
                                   "id such as course/SmolLM2-135M-Instruct.")


class TestPartialSnapshot:
    def test_is_a_half_cached_repo_caught_before_vllm_trips_on_it(self, lab):
        """Only config.json cached, then offline: are the missing weights and tokenizer named?

        (Without the check, snapshot_download(local_files_only=True) returns the half snapshot and
        vLLM fails ~25 s later with "Couldn't instantiate the backend tokenizer".)"""
        expect(fl.partial_snapshot(lab), "PartialSnapshotError",
               "course/SmolLM2-135M-Instruct is only partly cached in {PATH}/hub/models--course--SmolLM2-135M-Instruct"
               "/snapshots/{SHA}: it lacks weights (*.safetensors, *.bin or *.pt) and a tokenizer (tokenizer.json, "
               "tokenizer.model or vocab.json), and HF_HUB_OFFLINE=1 forbids fetching them: run `hf download "
               "course/SmolLM2-135M-Instruct` while online, then load again.")


class TestDiskSpace:
    def test_is_a_download_too_big_for_the_disk_refused_before_it_starts(self, lab):
        """HF_HOME on a real 2 MB tmpfs: is the 272.6 MB download refused with sizes and remedies?"""
        outcome = _mount_or_skip(fl.disk_too_small, lab)
        expect(outcome, "InsufficientDiskSpaceError",
               "course/SmolLM2-135M-Instruct needs 272.6 MB but {PATH}/small-disk has only {SIZE} free: free space "
               "first (cache.plan_not_accessed / plan_keep_latest, lesson 08) or set HF_HUB_CACHE to a bigger disk "
               "before importing huggingface_hub.")


class TestCacheNotWritable:
    def test_is_a_read_only_hf_home_reported_before_downloading(self, lab):
        """HF_HOME on a read-only tmpfs (root ignores chmod, not a read-only mount): is it caught?"""
        outcome = _mount_or_skip(fl.cache_not_writable, lab)
        expect(outcome, "CacheNotWritableError",
               "{PATH}/read-only-disk/hf is not writable (Read-only file system), so course/SmolLM2-135M-Instruct "
               "cannot be downloaded into the HF cache: point HF_HOME (or HF_HUB_CACHE) at a writable folder before "
               "importing huggingface_hub or vllm, or set HF_HUB_OFFLINE=1 to use only what is cached.",
               cause="OSError")


    def test_does_the_library_error_get_the_same_advice_without_preflight(self, lab):
        """Straight into snapshot_download on the read-only disk: does diagnosed() turn the real
        EROFS OSError into the same advice?"""
        outcome = _mount_or_skip(fl.cache_not_writable_unchecked, lab)
        expect(outcome, "CacheNotWritableError",
               "{PATH}/read-only-disk-2/hf is not writable (Read-only file system), so course/SmolLM2-135M-Instruct "
               "cannot be downloaded into the HF cache: point HF_HOME (or HF_HUB_CACHE) at a writable folder before "
               "importing huggingface_hub or vllm, or set HF_HUB_OFFLINE=1 to use only what is cached.",
               cause="OSError")


class TestEnvSetAfterImport:
    LATE_OFFLINE = ("HF_HUB_OFFLINE=1 was set after huggingface_hub was imported, so it has no effect (huggingface_hub "
                    "still uses HF_HUB_OFFLINE=0): restart the kernel and set it before importing vllm or "
                    "huggingface_hub (the first cell's course.setup() does).")

    def test_does_a_late_offline_flag_warn_in_a_fresh_interpreter(self, lab):
        """Import huggingface_hub, then set HF_HUB_OFFLINE=1: does check_env_applied() say it has no effect?"""
        outcome = fl.env_set_after_import(lab)
        assert outcome.ok, outcome
        assert outcome.result == [self.LATE_OFFLINE]
        assert outcome.warnings == [self.LATE_OFFLINE]

    def test_does_a_late_hf_home_warn_here(self, monkeypatch, tmp_path):
        """In this process (huggingface_hub imported long ago): is a new HF_HOME reported with the one in use?"""
        from huggingface_hub import constants

        monkeypatch.setenv("HF_HOME", str(tmp_path))
        with pytest.warns(StaleEnvWarning) as caught:
            found = diagnose.check_env_applied()
        assert [m.name for m in found] == ["HF_HOME"]
        assert str(caught[0].message) == (
            f"HF_HOME={tmp_path} was set after huggingface_hub was imported, so it has no effect (huggingface_hub "
            f"still uses {constants.HF_HOME}): restart the kernel and set it before importing vllm or huggingface_hub "
            "(the first cell's course.setup() does).")

    def test_is_an_unchanged_environment_silent(self):
        """Nothing changed since the import: no warning, nothing returned?"""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert diagnose.check_env_applied() == ()


class TestCorruptedWeights:
    def test_is_a_flipped_byte_in_a_cached_blob_caught_by_verify(self, lab):
        """One byte flipped in the cached weights (loads silently!): does preflight(verify=True) name it?"""
        expect(fl.corrupted_weight(lab), "CorruptedWeightsError",
               "course/tiny's cached model.safetensors is corrupted (its sha256 is {HEX}..., the hub's is {HEX}...): "
               "download it again (`hf download course/tiny model.safetensors --force-download`); `hf cache verify "
               "course/tiny` checks every file.")

    def test_is_a_truncated_local_file_caught_by_verify(self, tmp_path):
        """A local folder whose model.safetensors lost its tail: does preflight(verify=True) say so?"""
        folder = fl.make_small_repo(tmp_path, "org/trunc", 65_536, models.require(BASE))
        weights = folder / "model.safetensors"
        size = weights.stat().st_size
        with open(weights, "r+b") as fh:
            fh.truncate(size - 1000)
        with pytest.raises(Exception) as info:
            diagnose.preflight(folder, verify=True)
        assert type(info.value).__name__ == "CorruptedWeightsError"
        assert str(info.value) == (f"{weights} is corrupted ({size - 1000} B on disk, its header describes {size} B: "
                                   "truncated or padded): copy or convert the model into that folder again.")


class TestGpuKernels:
    """The rules are vLLM 0.32's; the messages are built by a pure function, so they are checked here on CPU."""

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
        assert diagnose.gpu_quantization_problem(*case) == message

    def test_do_the_rules_match_the_installed_vllm(self):
        """Are the capabilities and dtypes the messages quote the ones vLLM 0.32's kernels declare?"""
        import torch
        from vllm.model_executor.kernels.linear.mixed_precision.exllama import ExllamaLinearKernel
        from vllm.model_executor.kernels.linear.mixed_precision.marlin import MarlinLinearKernel
        from vllm.model_executor.layers.quantization.auto_awq import AutoAWQConfig
        from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig

        assert MarlinLinearKernel.get_min_capability() == diagnose.MARLIN_MIN_CAPABILITY
        assert ExllamaLinearKernel.get_min_capability() == diagnose.METHOD_MIN_CAPABILITY["gptq"]
        assert AutoGPTQConfig.get_min_capability() == diagnose.METHOD_MIN_CAPABILITY["gptq"]
        assert AutoAWQConfig.get_min_capability() == diagnose.METHOD_MIN_CAPABILITY["awq"]
        for cls in (AutoGPTQConfig, AutoAWQConfig):
            assert cls.get_supported_act_dtypes() == [torch.float16, torch.bfloat16]

    @pytest.mark.gpu
    def test_does_this_gpu_refuse_float32_gptq_in_vllm(self):
        """On a real GPU: does vLLM refuse dtype=float32 for GPTQ, and is it explained with this GPU's rule?"""
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False (the CPU checks above cover the messages)")
        if not (models.repo_path(GPTQ) / "config.json").is_file():
            pytest.skip(f"{GPTQ} is not built (`make models` builds it)")
        from vllm import LLM

        gptq_model = models.require(GPTQ)

        with pytest.raises(Exception) as info, diagnose.diagnosed(str(gptq_model), quantization="gptq", dtype="float32"):
            LLM(model=str(gptq_model), dtype="float32")
        assert type(info.value).__name__ == "GpuQuantizationError"
        assert str(info.value) == diagnose.gpu_quantization_problem("gptq", "float32", 90)
        with pytest.raises(Exception) as checked:
            diagnose.check_gpu_quantization("gptq", "float32")
        assert str(checked.value) == str(info.value)


@pytest.mark.slow
class TestThroughVllm:
    def test_does_each_real_vllm_failure_get_the_preflight_advice(self, lab, tmp_path):
        """LLM(...) inside diagnosed() for each bad input (and a truncated weight file): does the learner
        get the same one line as pre-flight, with vLLM's own exception chained?"""
        broken = tmp_path / "truncated"
        broken.mkdir()
        for item in models.require(BASE).iterdir():
            if item.is_file():
                shutil.copy2(item, broken / item.name)
        with open(broken / "model.safetensors", "r+b") as fh:
            fh.truncate(200_000_000)
        cases = fl.VLLM_CASES + (("truncated", str(broken), {}),) + (fl.GPTQ_VLLM_CASES if fl.gptq_built() else ())
        outcome = fl.through_vllm(lab, cases)
        assert outcome.ok, outcome
        seen = outcome.result
        url = lab.hub.url
        assert seen["bad id"][:2] == ["BadModelIdError", diagnose.bad_id_message("course//SmolLM2 135M")]
        assert seen["not found"][:2] == ["ModelNotFoundError", diagnose.not_found_message(
            "course/SmolLM2-135M-Instrukt", url, BASE)]
        assert seen["revision"][:2] == ["ModelRevisionError", diagnose.revision_message(BASE, "v2.0", url)]
        assert seen["gated"][:2] == ["GatedModelError", diagnose.gated_message(fl.GATED, url, 401)]
        assert seen["load_format"][:2] == ["WeightFormatError", diagnose.weight_format_message(
            f"{BIN} on {url}", "pt", ["pytorch_model.bin"])]
        assert seen["quantization"][:2] == ["QuantizationMismatchError", diagnose.quantization_message("gptq", BASE, None)]
        assert seen["truncated"][:2] == ["CorruptedWeightsError", (
            f"{broken / 'model.safetensors'} is corrupted (200000000 B on disk, its header describes 269060552 B: "
            "truncated or padded): copy or convert the model into that folder again.")]
        # what vLLM (or transformers inside it) really raised is chained, not hidden
        chained = {"bad id": "OSError", "not found": "OSError", "revision": "OSError", "gated": "OSError",
                   "load_format": "RuntimeError", "quantization": "ValidationError", "truncated": "SafetensorError"}
        if fl.gptq_built():  # vLLM's own GPTQ checks run on CPU too: the quant method, then the dtype
            assert seen["awq on gptq"][:2] == ["QuantizationMismatchError", diagnose.quantization_message(
                "awq", GPTQ, "gptq")]
            assert seen["gptq float32"][:2] == ["GpuQuantizationError", (
                "quantization='gptq' runs 4-bit kernels that take float16 or bfloat16 activations, not float32: pass "
                "dtype='float16' (or 'auto').")]
            chained.update({"awq on gptq": "ValidationError", "gptq float32": "ValidationError"})
        assert {name: v[2] for name, v in seen.items()} == chained
