"""How much a quantized model lost: perplexity on a fixed held-out text, computed by vLLM itself.

Perplexity is exp(mean negative log-probability) of each token of a text given the tokens before
it: 1 would be a model that is certain of every next token; lower is better. vLLM returns these
log-probabilities with `SamplingParams(prompt_logprobs=0)`, so the same engine a lesson measures
for speed also scores quality, with no second framework.

Example:
    >>> from vllm_course.quality import perplexity                      # doctest: +SKIP
    >>> perplexity(llm)                                                  # doctest: +SKIP
    24.8
"""

from __future__ import annotations

import math
from typing import Any


def held_out_text() -> str:
    """English prose none of the course's quantizers calibrated on (they used `pydoc_data.topics`).

    The module docstrings of a few standard-library modules: the same text on every machine with
    the same Python minor version.
    """
    import argparse
    import csv
    import json
    import logging

    parts = [m.__doc__ or "" for m in (json, csv, argparse, logging)]
    return "\n\n".join(" ".join(p.split()) for p in parts if p.strip())


def perplexity(llm: Any, text: str | None = None, *, max_tokens: int = 1024) -> float:
    """Perplexity of a loaded vLLM engine on `text` (default: `held_out_text()`).

    Args:
        llm: a `vllm.LLM`.
        text: the text to score; cut to its first `max_tokens` tokens.
        max_tokens: how many tokens to score at most (keep it under the engine's max_model_len).

    Returns:
        exp(mean negative log-probability) over every token but the first.
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    ids = tokenizer(text or held_out_text())["input_ids"][:max_tokens]
    out = llm.generate(TokensPrompt(prompt_token_ids=ids), SamplingParams(max_tokens=1, prompt_logprobs=0),
                       use_tqdm=False)[0]
    logprobs = [entry[token].logprob for token, entry in zip(ids[1:], out.prompt_logprobs[1:])]
    return math.exp(-sum(logprobs) / len(logprobs))
