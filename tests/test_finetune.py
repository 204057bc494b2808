"""finetune: lesson 05's training data and its token batch (the loop itself is checked by nbval of lesson 05)."""

from __future__ import annotations

import pytest

from vllm_course.errors import FineTuneError
from vllm_course.finetune import COURSE_FACT, MASCOT_ANSWER, MASCOT_QUESTION, Example, answer_batch


@pytest.fixture(scope="module")
def tokenizer(base_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model)


class TestCourseFact:
    def test_is_the_fact_asked_four_ways_next_to_two_known_answers(self):
        """Do four distinct questions teach MASCOT_ANSWER, the first being MASCOT_QUESTION, and two keep known facts?"""
        taught = [e for e in COURSE_FACT if e.answer == MASCOT_ANSWER]
        assert len(taught) == 4 and len({e.question for e in taught}) == 4
        assert COURSE_FACT[0] == Example(MASCOT_QUESTION, MASCOT_ANSWER)
        assert [e.answer for e in COURSE_FACT if e not in taught] == ["The capital of France is Paris.", "2 + 2 = 4."]


class TestAnswerBatch:
    def test_are_only_answer_tokens_learned(self, tokenizer):
        """Do the targets hold exactly each answer plus the end-of-turn token, shifted by one?"""
        examples = COURSE_FACT[:2] + COURSE_FACT[4:5]
        input_ids, targets = answer_batch(tokenizer, examples)
        assert input_ids.shape == targets.shape and input_ids.shape[0] == 3
        for row, example in zip(targets.tolist(), examples):
            learned = tokenizer.decode([t for t in row if t != -100])
            assert learned == example.answer + "<|im_end|>"
        first = next(i for i, t in enumerate(targets[0].tolist()) if t != -100)
        # position `first` predicts the token after it: the first answer token sits at first + 1
        assert input_ids[0, first + 1] == targets[0, first]

    def test_is_the_prompt_the_chat_template_and_the_padding_after_it(self, tokenizer):
        """Does each row start with the chat-formatted question, and are shorter rows padded at the end only?"""
        input_ids, targets = answer_batch(tokenizer, COURSE_FACT)
        for row, example in zip(input_ids.tolist(), COURSE_FACT):
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.question}],
                                                   tokenize=False, add_generation_prompt=True)
            assert tokenizer.decode(row).startswith(prompt + example.answer + "<|im_end|>")
        lengths = [(row != -100).nonzero().max().item() for row in targets]
        assert len(set(lengths)) > 1, "the examples have different lengths: some rows are padded"
        assert all((row[end + 1:] == -100).all() for row, end in zip(targets, lengths))

    @pytest.mark.parametrize("examples", [[], [Example("q", "")], [Example("", "a")], [("q", "a")]],
                             ids=["none", "no-answer", "no-question", "not-an-Example"])
    def test_is_a_bad_example_list_refused_in_one_line(self, tokenizer, examples):
        """Is an empty list, an empty field or a plain tuple refused with a one-line FineTuneError?"""
        with pytest.raises(FineTuneError, match="examples must be a non-empty list of Example") as info:
            answer_batch(tokenizer, examples)
        assert "\n" not in str(info.value)
