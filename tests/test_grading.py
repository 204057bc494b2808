"""`vllm_course.grading`, the checks the exercises' hidden tests call: on real caches, folders and hubs.

The pipeline test (test_nbgrader_pipeline.py) runs them inside real autograding; these pin down
each check's verdict and message on its own, without a kernel or vLLM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vllm_course import config
from vllm_course.build import require

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A private course hub and a cache holding the json files of the base model, downloaded through it."""
    from huggingface_hub import snapshot_download

    from vllm_course import hub

    cache = tmp_path_factory.mktemp("grading-cache")
    with hub.start(port=0) as private:
        snapshot_download(config.BASE_MODEL, cache_dir=cache, endpoint=private.url, allow_patterns=["*.json"])
        yield private, cache


class TestScratchFolders:
    def test_is_a_graded_scratch_folder_gone_when_the_grading_kernel_exits(self):
        """Does a folder from grading.scratch_dir (a graded cache holds a model copy) go with its kernel, shut
        down the way nbgrader's executor does it (nbclient, graceful), and stay while the kernel runs?"""
        import nbclient
        import nbformat

        code = "from vllm_course import grading\np = grading.scratch_dir('graded-test-')\nprint(p, p.is_dir())"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
        path, existed = nb.cells[0].outputs[0]["text"].split()
        assert existed == "True"
        assert not os.path.exists(path), f"{path} outlived the kernel that made it"


class TestGradingChecks:
    """`vllm_course.grading` on real caches, folders and hubs (no kernel, no vLLM)."""

    def test_does_cached_snapshot_map_each_file_to_a_blob_that_hashes_to_its_name(self, served):
        """Does the scan find the main revision, and do its blobs pass the hash check?"""
        from vllm_course import grading

        snap = grading.cached_snapshot(config.BASE_MODEL, cache_dir=served[1])
        assert snap.files == ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")
        assert all(blob.parent.name == "blobs" for blob in snap.blobs.values())
        grading.check_blobs(snap)

    def test_is_a_corrupted_blob_reported_by_name(self, served, tmp_path):
        """After one byte of a blob changes, does check_blobs name that file as corrupt?"""
        from vllm_course import grading
        from vllm_course.errors import GradingCheckError

        cache = tmp_path / "cache"
        shutil.copytree(served[1], cache, symlinks=True)
        snap = grading.cached_snapshot(config.BASE_MODEL, cache_dir=cache)
        blob = snap.blobs["config.json"]
        blob.write_bytes(blob.read_bytes().replace(b"llama", b"LLAMA"))
        with pytest.raises(GradingCheckError, match=r"The blob of config.json \(\w+\) does not hash to its name"):
            grading.check_blobs(snap)

    def test_is_a_repo_missing_from_the_cache_a_grading_error(self, served):
        """Does looking up a repo that is not cached fail with a message naming it?"""
        from vllm_course import grading
        from vllm_course.errors import GradingCheckError

        with pytest.raises(GradingCheckError, match=f"{config.BIN_MODEL} is not in the cache"):
            grading.cached_snapshot(config.BIN_MODEL, cache_dir=served[1])

    def test_do_weight_downloads_count_full_downloads_per_weight_file(self):
        """Are full downloads counted per weight file, with ranged reads, HEADs and other repos left out?"""
        from vllm_course import grading
        from vllm_course.hub import FileStats, HubStats

        stats = HubStats(files=(
            FileStats(config.BASE_MODEL, "model.safetensors", full_downloads=1, ranged_reads=2, heads=3),
            FileStats(config.BASE_MODEL, "config.json", full_downloads=4),
            FileStats(config.BIN_MODEL, "pytorch_model.bin", full_downloads=5),
        ))
        assert grading.weight_downloads(stats, config.BASE_MODEL) == {"model.safetensors": 1}
        assert grading.weight_downloads(HubStats(), config.BASE_MODEL) == {"model.safetensors": 0}
        grading.check_each_weight_downloaded_once(stats, config.BASE_MODEL)
        with pytest.raises(AssertionError, match="model.safetensors 0 time"):
            grading.check_each_weight_downloaded_once(HubStats(), config.BASE_MODEL)

    def test_does_the_folder_check_name_a_link_and_a_missing_file(self, tmp_path):
        """Does a local_dir copy pass, and fail when one file is a link or is missing, naming it?"""
        from vllm_course import grading
        from vllm_course.errors import GradingCheckError

        source = require(config.BASE_MODEL)
        for name in grading.repo_files(config.BASE_MODEL):
            os.link(source / name, tmp_path / name)  # same bytes, no copy
        grading.check_folder_matches_repo(tmp_path, config.BASE_MODEL)
        (tmp_path / "config.json").unlink()
        (tmp_path / "config.json").symlink_to(source / "config.json")
        with pytest.raises(GradingCheckError, match="config.json is a link"):
            grading.check_folder_matches_repo(tmp_path, config.BASE_MODEL)
        (tmp_path / "config.json").unlink()
        with pytest.raises(GradingCheckError, match="config.json is missing"):
            grading.check_folder_matches_repo(tmp_path, config.BASE_MODEL)

    def test_does_the_sentinel_log_a_request_and_go_silent_when_stopped(self):
        """Does a sentinel hub serve nothing, log each request, and stop answering once stopped?"""
        import httpx

        from vllm_course import grading

        sentinel = grading.sentinel_hub()
        try:
            answer = httpx.get(f"{sentinel.url}/api/models/{config.BASE_MODEL}", trust_env=False)
            assert answer.status_code == 404
            assert grading.hub_stats(sentinel.url).requests == 1
            assert sentinel.is_running()
        finally:
            sentinel.stop()
        assert not sentinel.is_running()

    def test_does_the_probe_see_the_offline_flag_only_when_the_child_gets_it(self, tmp_path):
        """Does the probe report huggingface_hub's own flag: True with HF_HUB_OFFLINE=1, False without?"""
        from vllm_course import grading

        probe = grading.write_probe(tmp_path)
        seen = []
        offline = dict(os.environ, HF_HUB_OFFLINE="1")
        for env in (offline, {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}):
            done = subprocess.run([sys.executable, str(probe), "a", "b c"], env=env, capture_output=True, text=True,
                                  timeout=120, check=True)
            seen.append(json.loads(done.stdout.splitlines()[-1]))
        assert [s["offline"] for s in seen] == [True, False]
        assert seen[0]["argv"] == ["a", "b c"]


class TestScriptProbe:
    """`grading.run_script`: a learner's script run by the grader in a fresh process, watched (no vLLM needed here)."""

    SCRIPT = (
        "import json, os, sys, urllib.request\n"
        "def main(model, question):\n"
        "    from huggingface_hub import constants\n"
        "    if model == 'ask-the-hub':\n"
        "        urllib.request.urlopen(os.environ['HF_ENDPOINT'] + '/api/models/x/y').close()\n"
        "    return {'offline': constants.HF_HUB_OFFLINE, 'answer': 'The capital of France is Paris.'}\n"
        "if __name__ == '__main__':\n"
        "    print(json.dumps(main(*sys.argv[1:3])))\n"
    )

    def test_does_the_probe_see_the_flag_the_requests_and_no_engine(self, tmp_path):
        """Does a probed run report huggingface_hub's flag, count hub requests per call, and see that no engine ran?"""
        from vllm_course import grading
        from vllm_course.errors import GradingCheckError

        script = tmp_path / "offline_generate.py"
        script.write_text(self.SCRIPT)
        sentinel = grading.sentinel_hub()
        try:
            online = grading.run_script(script, [("ask-the-hub", "Q?")], offline=False, endpoint=sentinel.url)
            offline = grading.run_script(script, [("some/folder", "Q?")], offline=True, endpoint=sentinel.url)
        finally:
            sentinel.stop()
        assert online.hf_offline is False and offline.hf_offline is True
        assert online.job(0)["requests"] == 1 and offline.job(0)["requests"] == 0
        assert "HTTPError" in online.job(0)["error"]  # the sentinel's 404, raised in main(): reported, not fatal
        assert offline.job(0)["returned"] == {"offline": True, "answer": "The capital of France is Paris."}
        with pytest.raises(GradingCheckError, match="main\\(\\) built no vllm.LLM engine"):
            grading.check_engine_answered(offline, 0, "some/folder")

    def test_is_an_online_run_stopped_at_its_first_request(self, tmp_path):
        """Does `start_online` run a script alongside, stopped at its first hub request, and let one that sets the flag
        itself end?"""
        import time

        from vllm_course import grading

        script = tmp_path / "offline_generate.py"
        script.write_text(self.SCRIPT.replace("    return {", "        time.sleep(600)\n    return {")
                          .replace("import json,", "import time, json,"))
        flagged = tmp_path / "flagged.py"
        flagged.write_text("import os\nos.environ['HF_HUB_OFFLINE'] = '1'\n" + self.SCRIPT)
        sentinel = grading.sentinel_hub()
        try:
            start = time.monotonic()
            online = grading.start_online(script, "ask-the-hub", "Q?", sentinel=sentinel)
            running_meanwhile = online.child.poll() is None
            asked = online.requests()
            stopped_after = time.monotonic() - start
            quiet = grading.start_online(flagged, "some/folder", "Q?", sentinel=sentinel).requests()
        finally:
            sentinel.stop()
        assert running_meanwhile  # start_online returned while the script ran: the grader works meanwhile
        assert asked == 1 and stopped_after < 60  # not the 600 s the script would sleep after its request
        assert online.child.returncode is not None  # stopped, not left running
        assert quiet == 0

    def test_is_a_script_that_cannot_start_a_grading_error_quoting_it(self, tmp_path):
        """Does a script that fails at import give a GradingCheckError with its traceback's last line?"""
        from vllm_course import grading
        from vllm_course.errors import GradingCheckError

        script = tmp_path / "broken.py"
        script.write_text("raise SystemExit('model folder is empty')\n")
        run = grading.run_script(script, [("m", "q")], offline=True, endpoint="http://127.0.0.1:9")
        assert run.returncode != 0 and run.jobs == ()
        with pytest.raises(GradingCheckError, match="model folder is empty"):
            run.job(0)

    def test_is_an_engine_model_matched_to_a_folder_or_a_cached_repo_id(self, tmp_path):
        """Is a snapshot folder of models--org--name the repo id org/name, and a folder itself only?"""
        from vllm_course.grading import _same_model

        snapshot = tmp_path / "models--course--m" / "snapshots" / "abc"
        snapshot.mkdir(parents=True)
        assert _same_model(str(snapshot), "course/m")
        assert not _same_model(str(snapshot), "course/other")
        assert _same_model(str(tmp_path), str(tmp_path / "."))
        assert not _same_model(str(snapshot), str(tmp_path))


def test_does_native_stderr_reach_a_kernel_cell_as_stdout_only_inside_the_guard():
    """In a real kernel, C-level writes to fd 2 show as stderr (which nbgrader scores 0) unless a hidden
    test wraps them in `grading.native_stderr_to_stdout()`, which shows them as stdout instead."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os, time\nos.write(2, b'NUMA binding: unguarded\\n')\ntime.sleep(0.5)"),
        nbformat.v4.new_code_cell("import os, time\nfrom vllm_course import grading\n"
                                  "with grading.native_stderr_to_stdout():\n    os.write(2, b'NUMA binding: guarded\\n')\n"
                                  "time.sleep(0.5)\nprint('after')"),
    ])
    # ipykernel watches fd 2 only where PYTEST_CURRENT_TEST is unset: as in an instructor's nbgrader run.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute(env=env)
    streams = [[(o.name, o.text) for o in cell.outputs if o.output_type == "stream"] for cell in nb.cells]
    assert any(name == "stderr" and "unguarded" in text for name, text in streams[0]), streams[0]
    assert not any(name == "stderr" for name, _ in streams[1]), streams[1]
    stdout = "".join(text for name, text in streams[1] if name == "stdout")
    assert "NUMA binding: guarded" in stdout and "after" in stdout, streams[1]
