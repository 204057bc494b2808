"""vllm_course.build.quantize and its tool script, without a real rebuild.

The real tool venv (1.2 GB, ~45 s) and a real quantization (1.5-4.5 min) are exercised by the model
build; here a fake tool venv (a stamp and a shell script standing in for its Python) checks the
plumbing: the stamp short-cut, the pinned recipe, the temp-folder-then-rename, the error messages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import time
from pathlib import Path

import pytest

from vllm_course.build import quantize, quantize_tool
from vllm_course.errors import ModelBuildError


def _fake_tool_venv(home: Path, script: str) -> Path:
    """A tool venv whose stamp matches the recipe and whose `python` is the given shell script."""
    venv = home / "tool-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(0o755)
    (venv / quantize.STAMP_NAME).write_text(quantize.recipe_hash() + "\n")
    return python


def _source(tmp_path: Path) -> Path:
    """A minimal model folder: config.json, weights, tokenizer and chat files."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        (src / name).write_text("{}")
    (src / "chat_template.jinja").write_text("{{ messages }}")
    (src / "model.safetensors").write_bytes(b"weights")
    return src


# $7 is the output folder, $9 the report path (after: tool script, --method m, --src s, --dst, --report).
_GOOD_TOOL = """
mkdir -p "$7"
echo '{"quantization_config": {"quant_method": "gptq", "bits": 4}}' > "$7/config.json"
echo weights > "$7/model.safetensors"
echo '{}' > "$7/tokenizer.json"
echo 'layer,time' > "$7/quant_log.csv"
echo '{"tool": "gptqmodel", "tool_version": "7.7.0", "bits": 4, "group_size": 64}' > "$9"
"""


class TestToolVenv:
    def test_is_the_second_call_a_noop(self, course_home: Path, monkeypatch: pytest.MonkeyPatch):
        """With a matching stamp, does ensure_tool_venv() run nothing and return at once?"""
        python = _fake_tool_venv(course_home, "exit 0\n")

        def no_subprocess(*args, **kwargs):
            raise AssertionError(f"ensure_tool_venv ran {args[0]!r} although the stamp matched")

        monkeypatch.setattr(quantize.subprocess, "run", no_subprocess)
        start = time.perf_counter()
        assert quantize.ensure_tool_venv() == python
        assert quantize.ensure_tool_venv() == python
        assert time.perf_counter() - start < 0.5

    def test_does_a_stale_stamp_rebuild_from_scratch(self, course_home: Path, monkeypatch: pytest.MonkeyPatch):
        """Does a changed recipe wipe the venv, run venv + 3 pinned pip steps and write the new stamp?"""
        _fake_tool_venv(course_home, "exit 0\n")
        venv = course_home / "tool-venv"
        (venv / quantize.STAMP_NAME).write_text("an-older-recipe\n")
        (venv / "leftover").write_text("from the old venv")
        calls: list[list[str]] = []

        def make_venv(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
            calls.append(cmd[1:3])
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "python").write_text("")
            return subprocess.CompletedProcess(cmd, 0, "", "")

        def install(python: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
            calls.append(["install", *args[:2]])
            return subprocess.CompletedProcess(args, 0, "", "")

        monkeypatch.setattr(quantize.subprocess, "run", make_venv)
        monkeypatch.setattr(quantize.installer, "install", install)
        quantize.ensure_tool_venv()
        assert not (venv / "leftover").exists()
        assert calls == [["-m", "venv"]] + [["install", "-c", str(venv / "constraints.txt")]] * 3
        assert (venv / quantize.STAMP_NAME).read_text().strip() == quantize.recipe_hash()
        assert (venv / "constraints.txt").read_text().split() == list(quantize._LOCK)

    def test_is_every_install_pinned(self):
        """Is every package the recipe names pinned with ==, and locked to that same version?"""
        lock = {line.split("==")[0].lower() for line in quantize._LOCK} | {"gptqmodel"}
        for _, args in quantize._STEPS:
            for arg in args:
                if arg.startswith("-"):
                    continue
                name, sep, version = arg.partition("==")
                assert sep and version, f"{arg} is not pinned"
                assert name.lower() in lock
                if name.lower() != "gptqmodel":
                    assert arg.lower() in {line.lower() for line in quantize._LOCK}


class TestQuantizeErrors:
    def test_does_a_folder_without_config_fail_clearly(self, course_home: Path, tmp_path: Path):
        """Does a src without config.json raise ModelBuildError naming it, before building anything?"""
        src = _source(tmp_path)
        (src / "config.json").unlink()
        start = time.perf_counter()
        with pytest.raises(ModelBuildError, match="no config.json") as err:
            quantize.quantize("gptq", src, tmp_path / "out")
        assert time.perf_counter() - start < 1
        assert str(src) in str(err.value) and "\n" not in str(err.value)
        assert not (course_home / "tool-venv").exists()
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("case, match", [("missing", "no such folder"), ("no-weights", "no \\*.safetensors")])
    def test_does_a_bad_source_fail_clearly(self, course_home: Path, tmp_path: Path, case: str, match: str):
        """Do a missing folder and a folder without safetensors weights fail before any install?"""
        src = tmp_path / "nowhere" if case == "missing" else _source(tmp_path)
        if case == "no-weights":
            (src / "model.safetensors").unlink()
        with pytest.raises(ModelBuildError, match=match):
            quantize.quantize("awq", src, tmp_path / "out")
        assert not (course_home / "tool-venv").exists()

    def test_does_an_unknown_method_fail(self, course_home: Path, tmp_path: Path):
        """Is a method other than gptq/awq refused with the valid choices?"""
        with pytest.raises(ModelBuildError, match="gptq, awq"):
            quantize.quantize("int8", _source(tmp_path), tmp_path / "out")  # type: ignore[arg-type]

    def test_does_a_tool_failure_show_its_last_lines(self, course_home: Path, tmp_path: Path):
        """Does a failing tool raise one line with its output's tail, chained, and leave no folder?"""
        _fake_tool_venv(course_home, 'echo "loading..."; echo "ValueError: hidden size 576" >&2; exit 3\n')
        dst = tmp_path / "models" / "gptq"
        with pytest.raises(ModelBuildError, match="ValueError: hidden size 576") as err:
            quantize.quantize("gptq", _source(tmp_path), dst)
        message = str(err.value)
        assert "\n" not in message and "exit 3" in message and "quantize-gptq.log" in message
        assert isinstance(err.value.__cause__, subprocess.CalledProcessError)
        assert list((tmp_path / "models").iterdir()) == []


class TestQuantizeFolder:
    def test_is_the_result_complete_and_swapped_in_whole(self, course_home: Path, tmp_path: Path):
        """Does dst get the tool's weights and config, the src's tokenizer/chat files, no log, no temp?"""
        _fake_tool_venv(course_home, _GOOD_TOOL)
        dst = tmp_path / "models" / "gptq"
        dst.mkdir(parents=True)
        (dst / "stale.txt").write_text("from an older build")
        settings = quantize.quantize("gptq", _source(tmp_path), dst)
        names = sorted(p.name for p in dst.iterdir())
        assert names == ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
                         "tokenizer.json", "tokenizer_config.json"]
        assert json.loads((dst / "config.json").read_text())["quantization_config"]["bits"] == 4
        assert settings["tool_version"] == "7.7.0" and settings["group_size"] == 64
        assert settings["seconds"] >= 0
        assert sorted(p.name for p in dst.parent.iterdir()) == ["gptq"]


class TestToolScript:
    def test_does_the_tool_stay_out_of_the_course_package(self):
        """Does quantize_tool.py import nothing from vllm_course (the tool venv does not have it)?"""
        tree = ast.parse(Path(quantize_tool.__file__).read_text())
        modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in modules if m.startswith("vllm_course")]
        assert all(n.level == 0 for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))

    def test_is_the_calibration_set_fixed_english_prose(self):
        """Are there N_SAMPLES (32) distinct prose paragraphs, the same on every call?"""
        texts = quantize_tool.calibration_texts()
        assert len(texts) == len(set(texts)) == quantize_tool.N_SAMPLES == 32
        assert texts == quantize_tool.calibration_texts()
        assert all(300 <= len(t) <= 2000 and ">>>" not in t for t in texts)
        assert sum(" the " in t for t in texts) > 0.75 * len(texts)  # English prose
