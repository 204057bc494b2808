"""formats: reading safetensors headers, and naming what a local model folder lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vllm_course import formats
from vllm_course.errors import LocalModelError, WeightFormatError


@pytest.fixture()
def tiny_safetensors(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_file({"b.weight": torch.zeros(2, 3, dtype=torch.bfloat16), "a.bias": torch.ones(4, dtype=torch.float32)},
              path, metadata={"format": "pt", "note": "course"})
    return path


class TestHeaderOfAValidFile:
    def test_does_the_header_match_what_safetensors_itself_reads(self, base_model):
        """Do names, dtypes and shapes from the raw header agree with safetensors' safe_open?"""
        header = formats.read_safetensors_header(base_model / "model.safetensors")
        with safe_open(base_model / "model.safetensors", framework="pt") as handle:
            names = set(handle.keys())
            norm = handle.get_slice("model.norm.weight")
            (entry,) = [t for t in header.tensors if t.name == "model.norm.weight"]
            assert (norm.get_dtype(), tuple(norm.get_shape())) == ("BF16", entry.shape)
        assert {t.name for t in header.tensors} == names
        assert header.metadata == {"format": "pt"}
        assert header.dtypes == {"BF16": 272}
        assert header.parameters == 134_515_008

    def test_do_offsets_tile_the_data_section_exactly(self, base_model):
        """Do the byte ranges follow each other without gaps and end exactly at the end of the file?"""
        header = formats.read_safetensors_header(base_model / "model.safetensors")
        position = 0
        for entry in header.tensors:
            assert entry.start == position, entry
            assert entry.end - entry.start == entry.numel * 2  # bf16
            position = entry.end
        assert header.data_offset + position == header.file_bytes

    def test_are_metadata_and_mixed_dtypes_read_from_a_tiny_file(self, tiny_safetensors):
        """Does a file written by save_file give back its metadata, both dtypes and shapes?"""
        header = formats.read_safetensors_header(tiny_safetensors)
        assert header.metadata == {"format": "pt", "note": "course"}
        assert header.dtypes == {"BF16": 1, "F32": 1}
        entries = {t.name: t for t in header.tensors}
        assert entries["b.weight"].shape == (2, 3)
        assert entries["a.bias"].end - entries["a.bias"].start == 16
        assert "2 tensors (BF16: 1, F32: 1)" in str(header)

    def test_is_only_the_header_needed(self, tiny_safetensors, tmp_path):
        """With the tensor data cut off, is the header still read (proof no tensor byte is needed)?"""
        header = formats.read_safetensors_header(tiny_safetensors)
        cut = tmp_path / "cut.safetensors"
        cut.write_bytes(tiny_safetensors.read_bytes()[: header.data_offset])
        assert formats.read_safetensors_header(cut).tensors == header.tensors


class TestHeaderOfABadFile:
    def test_is_a_pickle_refused_with_an_actionable_message(self, bin_model):
        """Is pytorch_model.bin (a zip of pickles) refused as 'not a safetensors file', in one line?"""
        with pytest.raises(WeightFormatError) as info:
            formats.read_safetensors_header(bin_model / "pytorch_model.bin")
        message = str(info.value)
        assert "is not a safetensors file: its first 8 bytes give a header length of" in message
        assert "inspect_folder" in message and "\n" not in message

    def test_is_a_header_that_is_not_json_refused(self, tmp_path):
        """Is a valid length prefix followed by non-JSON bytes refused?"""
        path = tmp_path / "bad.safetensors"
        path.write_bytes((5).to_bytes(8, "little") + b"{oops" + b"\0" * 8)
        with pytest.raises(WeightFormatError, match="its 5-byte header is not JSON"):
            formats.read_safetensors_header(path)

    def test_is_an_entry_without_offsets_refused(self, tmp_path):
        """Is a JSON header whose tensor lacks data_offsets refused as malformed?"""
        body = json.dumps({"w": {"dtype": "F32", "shape": [1]}}).encode()
        path = tmp_path / "bad.safetensors"
        path.write_bytes(len(body).to_bytes(8, "little") + body + b"\0" * 4)
        with pytest.raises(WeightFormatError, match="malformed safetensors header entry"):
            formats.read_safetensors_header(path)

    def test_is_a_missing_file_a_local_model_error(self, tmp_path):
        """Does a path that does not exist raise LocalModelError (a FileNotFoundError)?"""
        with pytest.raises(FileNotFoundError, match="is not a file: pass the path of a .safetensors file"):
            formats.read_safetensors_header(tmp_path / "missing.safetensors")
        assert issubclass(LocalModelError, FileNotFoundError)


def _copy_without(src: Path, dst: Path, *skip: str) -> Path:
    dst.mkdir()
    for item in src.iterdir():
        if item.name not in skip:
            (dst / item.name).symlink_to(item)
    return dst


class TestLocalFolderCompleteness:
    def test_is_a_built_course_model_complete(self, base_model):
        """Does the base course folder need nothing more?"""
        assert formats.missing_files(base_model) == []
        assert formats.require_complete(base_model) == base_model

    def test_is_a_missing_config_named(self, base_model, tmp_path):
        """With config.json removed, is exactly config.json reported missing?"""
        folder = _copy_without(base_model, tmp_path / "m", "config.json")
        assert formats.missing_files(folder) == ["config.json"]
        with pytest.raises(LocalModelError, match="missing config.json"):
            formats.require_complete(folder)

    def test_is_a_missing_tokenizer_named(self, base_model, tmp_path):
        """With tokenizer.json removed, is the tokenizer reported missing (and nothing else)?"""
        folder = _copy_without(base_model, tmp_path / "m", "tokenizer.json")
        assert formats.missing_files(folder) == ["a tokenizer (tokenizer.json, tokenizer.model or vocab.json)"]

    def test_are_missing_weights_named(self, base_model, tmp_path):
        """With the weights removed, are weights reported missing?"""
        folder = _copy_without(base_model, tmp_path / "m", "model.safetensors")
        assert formats.missing_files(folder) == ["weights (*.safetensors, *.bin or *.pt)"]

    def test_is_a_folder_that_does_not_exist_reported(self, tmp_path):
        """Does a path that is not there report the folder itself?"""
        assert formats.missing_files(tmp_path / "nope") == [f"the folder itself ({tmp_path / 'nope'})"]
