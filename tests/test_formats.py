"""formats: naming what a local model folder lacks (and the advice that names it)."""

from __future__ import annotations

from pathlib import Path


from vllm_course import diagnose, formats
from vllm_course.errors import CorruptedWeightsError, LocalModelError


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

    def test_is_a_missing_config_named(self, base_model, tmp_path):
        """With config.json removed, is exactly config.json reported missing?"""
        folder = _copy_without(base_model, tmp_path / "m", "config.json")
        assert formats.missing_files(folder) == ["config.json"]
        advice = diagnose.explain(ValueError("vLLM's own error"), model=str(folder))  # the notebook's advice line
        assert isinstance(advice, LocalModelError) and f"{folder} is not a loadable model folder: it lacks config.json" \
            in str(advice)

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


class TestCorruptedWeightsAdvice:
    def test_does_a_weight_link_to_a_deleted_blob_get_its_advice(self, base_model, tmp_path):
        """The weights a link to a blob deleted by hand: does the advice name the file as unreadable (not crash)?"""
        folder = _copy_without(base_model, tmp_path / "m", "model.safetensors")
        (folder / "model.safetensors").symlink_to(tmp_path / "deleted-blob")
        advice = diagnose.explain(RuntimeError("Error while deserializing header: MetadataIncompleteBuffer"),
                                  model=str(folder))
        assert isinstance(advice, CorruptedWeightsError)
        assert str(advice) == (f"{folder / 'model.safetensors'} is corrupted (unreadable header: FileNotFoundError): "
                               "copy or convert the model into that folder again.")
