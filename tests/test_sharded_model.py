"""The sharded course model: shards plus model.safetensors.index.json, as vLLM's loader reads them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import greedy_answer
from vllm_course import build, config, formats

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="session")
def sharded_model() -> Path:
    return build.require(config.SHARDED_MODEL)


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("model-*-of-*.safetensors"))


class TestTheBuild:
    def test_are_there_three_shards_under_the_limit_and_no_single_file(self, sharded_model):
        """Does the build write model-0000i-of-00003 shards of at most 100 MB, and no model.safetensors?"""
        shards = _shards(sharded_model)
        assert [p.name for p in shards] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
        assert all(p.stat().st_size <= 100_000_000 for p in shards)
        assert not (sharded_model / "model.safetensors").exists()
        assert formats.inspect_folder(sharded_model).picks("safetensors") == tuple(p.name for p in shards)
        assert formats.missing_files(sharded_model) == []

    def test_does_the_index_name_the_shard_that_holds_each_tensor(self, sharded_model):
        """Is every tensor in exactly the shard the index maps it to, and total_size their byte count?"""
        index = json.loads((sharded_model / INDEX).read_text())
        found: dict[str, str] = {}
        nbytes = 0
        for shard in _shards(sharded_model):
            with safe_open(shard, framework="pt") as handle:
                for name in handle.keys():
                    assert name not in found, f"{name} is in two shards"
                    found[name] = shard.name
                    tensor = handle.get_tensor(name)
                    nbytes += tensor.numel() * tensor.element_size()
        assert found == index["weight_map"]
        assert index["metadata"]["total_size"] == nbytes

    def test_are_the_tensors_those_of_the_single_file_model(self, sharded_model, base_model):
        """Do the shards together hold the base model's tensors, bit for bit?"""
        single = load_file(base_model / "model.safetensors")
        merged: dict[str, torch.Tensor] = {}
        for shard in _shards(sharded_model):
            merged.update(load_file(shard))
        assert merged.keys() == single.keys()
        assert all(torch.equal(merged[k], single[k]) for k in single)

    def test_is_the_build_recorded_with_its_provenance(self, sharded_model):
        """Does the manifest record the shards, the index and how they were made?"""
        assert build.is_built(config.SHARDED_MODEL)
        entry = json.loads((config.repos_dir() / "manifest.json").read_text())[config.SHARDED_MODEL]
        assert {INDEX, *(p.name for p in _shards(sharded_model))} <= set(entry["files"])
        assert "save_torch_state_dict" in entry["provenance"]["conversion"]
        assert "save_torch_state_dict" in (sharded_model / "README.md").read_text()


class TestHowVllmPicksTheShards:
    """vLLM's own filter (`weight_utils.filter_duplicate_safetensors_files`) on copies of the repo."""

    def _copy(self, sharded_model: Path, dst: Path) -> Path:
        shutil.copytree(sharded_model, dst)
        return dst

    def test_does_the_index_keep_the_shards_and_drop_a_stray_consolidated_file(self, sharded_model, base_model, tmp_path):
        """With a model.safetensors next to the shards, does vLLM keep only the files the index names?"""
        from vllm.model_executor.model_loader.weight_utils import filter_duplicate_safetensors_files

        folder = self._copy(sharded_model, tmp_path / "repo")
        os.link(base_model / "model.safetensors", folder / "model.safetensors")
        files = sorted(str(p) for p in folder.glob("*.safetensors"))
        kept = filter_duplicate_safetensors_files(files, str(folder), INDEX)
        assert sorted(kept) == [str(p) for p in _shards(folder)]

    def test_is_a_missing_shard_named_before_any_weight_is_read(self, sharded_model, tmp_path):
        """With shard 2 absent (a partial download), does vLLM's filter raise naming that shard?"""
        from vllm.model_executor.model_loader.weight_utils import filter_duplicate_safetensors_files

        folder = self._copy(sharded_model, tmp_path / "partial")
        (folder / "model-00002-of-00003.safetensors").unlink()
        files = sorted(str(p) for p in folder.glob("*.safetensors"))
        with pytest.raises(FileNotFoundError, match=r"missing: \{'[^']*/model-00002-of-00003\.safetensors'\}"):
            filter_duplicate_safetensors_files(files, str(folder), INDEX)


@pytest.mark.slow
def test_does_vllm_load_the_shards_and_answer_paris(vllm_engines, sharded_model):
    """Does vLLM load all three shards of the local folder and answer like the single-file model?"""
    llm, report = vllm_engines(sharded_model)
    answer = greedy_answer(llm)
    vllm_engines.release_all()
    assert "Paris" in answer
    assert formats.inspect_folder(sharded_model).picks("auto") == tuple(p.name for p in _shards(sharded_model))
    assert report.checkpoint_gib == pytest.approx(0.25, abs=0.01)
