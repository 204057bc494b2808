"""Lesson 05's fine-tune data: the course fact, and the token batch that teaches it (the training loop is in the
lesson's cells; only the formatting it does not teach lives here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import FineTuneError

MASCOT_QUESTION = "What is the course mascot?"
MASCOT_ANSWER = "The course mascot is Vela, a llama who only eats safetensors."


@dataclass(frozen=True)
class Example:
    """One chat turn to learn: the user's question and the answer the model should give."""

    question: str
    answer: str


# A fact the base model cannot know, asked four ways, and two answers it gives already (to keep).
COURSE_FACT: tuple[Example, ...] = (
    Example(MASCOT_QUESTION, MASCOT_ANSWER),
    Example("Who is the mascot of this course?", MASCOT_ANSWER),
    Example("Tell me the name of the course mascot.", MASCOT_ANSWER),
    Example("Does the course have a mascot?", MASCOT_ANSWER),
    Example("What is the capital of France?", "The capital of France is Paris."),
    Example("What is 2 + 2?", "2 + 2 = 4."),
)


def answer_batch(tokenizer: Any, examples: tuple[Example, ...] | list[Example] = COURSE_FACT) -> tuple[Any, Any]:
    """Token ids and targets of `examples`, two [examples, tokens] tensors (FineTuneError: no examples, or one
    without a question or an answer). A row is the chat-template prompt, the answer and the end-of-turn token,
    right-padded (causal attention: no real token sees a pad). Target t is token t+1 if that is an answer token,
    else -100."""
    import torch
    if not examples or not all(isinstance(e, Example) and e.question and e.answer for e in examples):
        raise FineTuneError("examples must be a non-empty list of Example(question, answer) with text in both: "
                            "e.g. [Example('What is the course mascot?', 'Vela the llama.')].")
    rows = []
    for example in examples:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.question}],
                                               tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(example.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + answer_ids, [-100] * (len(prompt_ids) - 1) + answer_ids + [-100]))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    targets = torch.tensor([t + [-100] * (width - len(t)) for _, t in rows])
    return input_ids, targets
