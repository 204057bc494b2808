"""finetune: a real, short CPU fine-tune of the course model, and its bad-input errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_course import finetune, formats
from vllm_course.errors import FineTuneError, LocalModelError
from vllm_course.finetune import COURSE_FACT, MASCOT_ANSWER, MASCOT_QUESTION, Example


class TestBadSettings:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"examples": []}, "examples must be a non-empty list of Example"),
            ({"examples": [Example("q", "")]}, "examples must be a non-empty list of Example"),
            ({"steps": 0}, "steps=0 must be a positive integer"),
            ({"lr": 0.0}, "lr=0.0 must be positive"),
            ({"last_layers": 0}, "last_layers=0 is out of range: SmolLM2-135M-Instruct has 30 decoder layers; pick 1..30"),
            ({"last_layers": 31}, "last_layers=31 is out of range"),
        ],
    )
    def test_is_each_bad_setting_refused_before_any_training(self, base_model, tmp_path, kwargs, message):
        """Is each bad argument refused with a one-line FineTuneError, and nothing written?"""
        with pytest.raises(FineTuneError) as info:
            finetune.finetune(base_model, tmp_path / "out", **kwargs)
        assert message in str(info.value)
        assert "\n" not in str(info.value)
        assert not (tmp_path / "out").exists()

    def test_is_an_existing_output_protected(self, base_model, tmp_path):
        """Does a non-empty output folder stop the run unless overwrite=True?"""
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
        with pytest.raises(FineTuneError, match="already exists: pass overwrite=True"):
            finetune.finetune(base_model, tmp_path / "out")
        assert (tmp_path / "out" / "keep.txt").read_text() == "mine"

    def test_is_an_incomplete_base_a_local_model_error(self, tmp_path):
        """Does a base folder without config/weights/tokenizer raise LocalModelError naming them?"""
        (tmp_path / "base").mkdir()
        with pytest.raises(LocalModelError, match="missing config.json, weights"):
            finetune.finetune(tmp_path / "base", tmp_path / "out")


class TestBatch:
    def test_are_only_answer_tokens_learned(self, base_model):
        """Do the targets hold exactly each answer plus the end-of-turn token, shifted by one?"""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base_model)
        input_ids, targets = finetune._batch(tokenizer, COURSE_FACT[:2] + COURSE_FACT[4:5])
        assert input_ids.shape == targets.shape and input_ids.shape[0] == 3
        for row, example in zip(targets.tolist(), (COURSE_FACT[0], COURSE_FACT[1], COURSE_FACT[4])):
            learned = tokenizer.decode([t for t in row if t != -100])
            assert learned == example.answer + "<|im_end|>"
        first = targets[0].tolist().index(next(t for t in targets[0].tolist() if t != -100))
        # position `first` predicts the token after it: the first answer token sits at first + 1
        assert input_ids[0, first + 1] == targets[0, first]


@pytest.mark.slow
class TestRealFineTune:
    @pytest.fixture(scope="class")
    @classmethod
    def tuned(cls, base_model, tmp_path_factory) -> finetune.FineTuneResult:
        return finetune.finetune(base_model, tmp_path_factory.mktemp("ft") / "SmolLM2-135M-Instruct-ft")

    def test_does_the_loss_fall(self, tuned):
        """Does the loss fall from above 3 to below 0.1 in the default 10 steps?"""
        assert tuned.steps == len(tuned.losses) == 10
        assert tuned.first_loss > 3.0 and tuned.final_loss < 0.1, tuned.losses
        assert tuned.trainable_parameters < tuned.total_parameters / 10
        assert "fine-tuned the last 2 of 30 layers" in str(tuned)

    def test_is_the_output_a_complete_bf16_safetensors_model(self, tuned, base_model):
        """Is the saved folder loadable (config, tokenizer, weights) with the base's tensors and size?"""
        assert formats.require_complete(tuned.output) == tuned.output
        assert formats.inspect_folder(tuned.output).weights == {"safetensors": ("model.safetensors",)}
        header = formats.read_safetensors_header(tuned.output / "model.safetensors")
        base = formats.read_safetensors_header(base_model / "model.safetensors")
        assert header.dtypes == {"BF16": 272}
        assert [(t.name, t.shape) for t in header.tensors] == [(t.name, t.shape) for t in base.tensors]
        assert (tuned.output / "chat_template.jinja").is_file()
        assert not Path(str(tuned.output) + ".partial").exists()

    def test_did_only_the_top_layers_change(self, tuned, base_model):
        """Are layers 0-27 and the embeddings bit-identical to the base, and layers 28-29 changed?"""
        import torch
        from safetensors.torch import load_file

        new = load_file(tuned.output / "model.safetensors")
        old = load_file(base_model / "model.safetensors")
        changed = {name.split(".")[2] for name in new if name.startswith("model.layers.")
                   and not torch.equal(new[name], old[name])}
        assert changed == {"28", "29"}
        assert torch.equal(new["model.embed_tokens.weight"], old["model.embed_tokens.weight"])
        assert not torch.equal(new["model.norm.weight"], old["model.norm.weight"])

    def test_does_vllm_give_the_new_answer(self, tuned, vllm_engines):
        """Loaded by vLLM from its folder, does the fine-tune state the mascot fact and keep Paris?"""
        from vllm import SamplingParams

        llm, _ = vllm_engines(tuned.output)
        chats = [[{"role": "user", "content": MASCOT_QUESTION}],
                 [{"role": "user", "content": "What is the capital of France?"}]]
        outs = llm.chat(chats, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
        vllm_engines.release_all()
        assert outs[0].outputs[0].text.strip() == MASCOT_ANSWER
        assert "Paris" in outs[1].outputs[0].text
