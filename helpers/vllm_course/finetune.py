"""A real, short fine-tune on CPU: teach the course model one new fact, save it as a local model.

Lesson 05 uses it to make a "custom" model the learner owns: the last few decoder layers of
`course/SmolLM2-135M-Instruct` are trained (plain PyTorch + transformers, AdamW) on a handful of
chat examples, then the model is saved with `save_pretrained` (safetensors, bf16) next to its
tokenizer, so vLLM can load it from the folder.

Only the last layers learn, so the frozen layers below them give the same output at every step:
they run once, and each step runs just the trainable layers on their cached input. Ten steps of
the top 2 layers cost 10-25 CPU-seconds (measured on 2 shared cores).

Example:
    >>> result = finetune(models.require("course/SmolLM2-135M-Instruct"), scratch / "ft")  # doctest: +SKIP
    >>> print(result)                                                                       # doctest: +SKIP
    fine-tuned the last 2 of 30 layers (7.1 M of 134.5 M parameters) on 6 examples: 10 steps in 15.2 s (CPU 10.5 s), loss 3.85 -> 0.02
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import formats
from .errors import FineTuneError

MASCOT_QUESTION = "What is the course mascot?"
MASCOT_ANSWER = "The course mascot is Vela, a llama who only eats safetensors."


@dataclass(frozen=True)
class Example:
    """One chat turn to learn: the user's question and the answer the model should give."""

    question: str
    answer: str


# A fact the base model cannot know (asked four ways), plus two answers it already gives, so the
# fine-tune teaches the new fact without overwriting what the model knew.
COURSE_FACT: tuple[Example, ...] = (
    Example(MASCOT_QUESTION, MASCOT_ANSWER),
    Example("Who is the mascot of this course?", MASCOT_ANSWER),
    Example("Tell me the name of the course mascot.", MASCOT_ANSWER),
    Example("Does the course have a mascot?", MASCOT_ANSWER),
    Example("What is the capital of France?", "The capital of France is Paris."),
    Example("What is 2 + 2?", "2 + 2 = 4."),
)


@dataclass(frozen=True)
class FineTuneResult:
    """What one fine-tune did: the layers it trained, the losses, the time, and where it saved."""

    base: Path
    output: Path
    steps: int
    examples: int
    trainable_layers: int
    total_layers: int
    trainable_parameters: int
    total_parameters: int
    losses: tuple[float, ...]  # one per step
    seconds: float  # wall time of training only (the cached forward pass included), not loading or saving
    cpu_seconds: float  # CPU time of the same span, all threads: wall >> cpu / cores means a busy machine

    @property
    def first_loss(self) -> float:
        return self.losses[0]

    @property
    def final_loss(self) -> float:
        return self.losses[-1]

    def __str__(self) -> str:
        return (
            f"fine-tuned the last {self.trainable_layers} of {self.total_layers} layers "
            f"({self.trainable_parameters / 1e6:.1f} M of {self.total_parameters / 1e6:.1f} M parameters) "
            f"on {self.examples} examples: {self.steps} steps in {self.seconds:.1f} s (CPU {self.cpu_seconds:.1f} s), "
            f"loss {self.first_loss:.2f} -> {self.final_loss:.2f}"
        )


def finetune(
    base: str | Path,
    output: str | Path,
    examples: tuple[Example, ...] | list[Example] = COURSE_FACT,
    *,
    steps: int = 10,
    last_layers: int = 2,
    lr: float = 5e-4,
    seed: int = 0,
    overwrite: bool = False,
) -> FineTuneResult:
    """Fine-tune the last `last_layers` decoder layers of a local causal LM and save it to `output`.

    The loss counts only the answer tokens (the chat-template prompt is masked), so the model learns
    to answer, not to repeat questions. Training runs in float32; the saved weights are bf16
    safetensors (same size as the base), with the tokenizer and chat template beside them.

    Args:
        base: a complete local model folder (config.json, weights, tokenizer).
        output: folder to write; it must not exist unless `overwrite=True`.
        examples: the chat turns to learn (default: the course-mascot fact plus two retained answers).
        steps: optimizer steps, each over all examples (one batch).
        last_layers: how many of the top decoder layers (and the final norm) to train.
        lr: AdamW learning rate.
        seed: torch seed, for a repeatable result.
        overwrite: replace `output` if it exists.

    Returns:
        A `FineTuneResult` (losses per step, seconds, parameter counts).

    Raises:
        LocalModelError: `base` is not a complete model folder.
        FineTuneError: a bad argument (steps, last_layers, examples) or `output` already exists.
    """
    base_path = formats.require_complete(base)
    out_path = Path(output)
    examples = tuple(examples)
    _check_args(examples, steps, lr, out_path, overwrite)
    total_layers = _layer_count(base_path)
    if not isinstance(last_layers, int) or not 1 <= last_layers <= total_layers:
        raise FineTuneError(f"last_layers={last_layers!r} is out of range: {base_path.name} has {total_layers} "
                            f"decoder layers; pick 1..{total_layers} (2 trains in well under a minute on 2 cores).")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    with _no_progress_bars():
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    layers = model.model.layers
    trainable = _freeze_all_but_top(model, last_layers)

    start, cpu_start = time.perf_counter(), time.process_time()
    input_ids, targets = _batch(tokenizer, examples)
    with torch.no_grad():  # the frozen layers: run once, keep their output
        hidden = model.model(input_ids=input_ids, output_hidden_states=True).hidden_states[len(layers) - last_layers]
    positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
    learn = targets != -100
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        state = hidden
        rotary = model.model.rotary_emb(state, position_ids=positions)
        for layer in layers[len(layers) - last_layers:]:
            state = layer(state, attention_mask=None, position_embeddings=rotary, position_ids=positions)
        logits = model.lm_head(model.model.norm(state)[learn])  # only where there is a target
        loss = torch.nn.functional.cross_entropy(logits.float(), targets[learn])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()

    with _no_progress_bars():
        _save(model, tokenizer, base_path, out_path, overwrite, examples, steps, last_layers, lr)
    return FineTuneResult(
        base=base_path, output=out_path, steps=steps, examples=len(examples),
        trainable_layers=last_layers, total_layers=len(layers),
        trainable_parameters=sum(p.numel() for p in trainable),
        total_parameters=sum(p.numel() for p in model.parameters()),
        losses=tuple(losses), seconds=seconds, cpu_seconds=cpu_seconds,
    )


# ---------------------------------------------------------------- private helpers


def _check_args(examples: tuple[Example, ...], steps: int, lr: float, output: Path, overwrite: bool) -> None:
    if not examples or not all(isinstance(e, Example) and e.question and e.answer for e in examples):
        raise FineTuneError("examples must be a non-empty list of Example(question, answer) with text in both: "
                            "e.g. [Example('What is the course mascot?', 'Vela the llama.')].")
    if not isinstance(steps, int) or steps < 1:
        raise FineTuneError(f"steps={steps!r} must be a positive integer (30 is enough for one fact).")
    if not lr > 0:
        raise FineTuneError(f"lr={lr!r} must be positive (3e-4 works for the last 4 layers).")
    if output.exists() and any(output.iterdir() if output.is_dir() else [output]) and not overwrite:
        raise FineTuneError(f"{output} already exists: pass overwrite=True or choose another output folder.")


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Hide transformers' loading/writing bars (their rates change every run), then restore the setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _layer_count(base: Path) -> int:
    try:
        return int(json.loads((base / "config.json").read_text())["num_hidden_layers"])
    except (KeyError, ValueError, TypeError) as exc:
        raise FineTuneError(f"{base / 'config.json'} has no usable num_hidden_layers: "
                            "finetune() needs a decoder-only model such as the course model.") from exc


def _freeze_all_but_top(model: Any, last_layers: int) -> list[Any]:
    """Freeze every parameter, then unfreeze the top `last_layers` layers and the final norm."""
    for param in model.parameters():
        param.requires_grad = False
    top = list(model.model.layers[-last_layers:]) + [model.model.norm]
    params = [p for module in top for p in module.parameters()]
    for param in params:
        param.requires_grad = True
    return params


def _batch(tokenizer: Any, examples: tuple[Example, ...]) -> tuple[Any, Any]:
    """Token ids (right-padded) and targets: the next token on answer positions, -100 elsewhere.

    Right padding needs no attention mask: with causal attention no real token sees a pad.
    """
    import torch

    rows = []
    for example in examples:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.question}],
                                               tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(example.answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + answer_ids
        # position t predicts token t+1: targets are the answer tokens, shifted left by one
        rows.append((ids, [-100] * (len(prompt_ids) - 1) + answer_ids + [-100]))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    targets = torch.tensor([t + [-100] * (width - len(t)) for _, t in rows])
    return input_ids, targets


def _save(model: Any, tokenizer: Any, base: Path, output: Path, overwrite: bool,
          examples: tuple[Example, ...], steps: int, last_layers: int, lr: float) -> None:
    """Write bf16 safetensors + tokenizer + a model card into a temporary folder, then move it into place."""
    import torch

    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    for name in ("chat_template.jinja", "generation_config.json"):
        if (base / name).is_file() and not (partial / name).is_file():
            shutil.copy2(base / name, partial / name)
    recipe = {"base": base.name, "steps": steps, "last_layers": last_layers, "lr": lr,
              "examples": [vars(e) for e in examples]}
    (partial / "README.md").write_text(
        f"---\nbase_model: {base.name}\nlicense: apache-2.0\ntags: [vllm-course, fine-tuned]\n---\n\n"
        f"# {output.name}\n\nA course fine-tune of {base.name} (vllm_course.finetune):\n\n"
        f"```json\n{json.dumps(recipe, indent=1)}\n```\n"
    )
    if output.exists() and overwrite:
        shutil.rmtree(output) if output.is_dir() else output.unlink()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(output)
