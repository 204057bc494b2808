"""Grading probe, run by path in a fresh process (`grading.run_script` reads its report): it calls a learner script's
`main(model, question)` per job and records the vLLM engines built and texts generated. Only the standard library
(and the course's stdlib-only import hook) is imported before the script runs: it sees what it would alone. Usage:
    python script_probe.py <report.json> <script.py> <sentinel url or ""> <jobs as JSON> [<reference folder>]"""

import json
import os
import runpy
import sys
import urllib.request

from vllm_course.import_hook import after_import  # standard library only

built: list = []  # each engine built while watching (its model is reported; it answers the grader's questions)
generated: list[dict] = []  # each text an engine generated while watching
watching = [True]


def _model(llm) -> str:
    return str(llm.llm_engine.model_config.model)


def _watch(module) -> None:
    """Wrap `vllm.LLM`'s constructor, request intake and run loop to record engines, texts and sampling."""
    cls = module.LLM
    init, add, run = cls.__init__, cls._add_request, cls._run_engine
    params = {}

    def watched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if watching[0]:
            built.append(self)

    def watched_add(self, prompt, sampling, *args, **kwargs):
        request_id = add(self, prompt, sampling, *args, **kwargs)
        params[(id(self), str(request_id))] = {k: getattr(sampling, k, None) for k in ("temperature", "max_tokens")}
        return request_id

    def watched_run(self, *args, **kwargs):
        outputs = run(self, *args, **kwargs)
        if watching[0]:
            for out in outputs:
                prompt = out.prompt or self.get_tokenizer().decode(out.prompt_token_ids or [])
                for c in getattr(out, "outputs", []):
                    generated.append({"model": _model(self), "prompt": prompt, "text": c.text,
                                      "tokens": len(c.token_ids),
                                      "params": params.get((id(self), str(out.request_id)), {})})
        return outputs

    cls.__init__, cls._add_request, cls._run_engine = watched_init, watched_add, watched_run


def _requests(sentinel: str) -> int | None:
    """Requests the sentinel hub has logged so far (None: no sentinel)."""
    if not sentinel:
        return None
    with urllib.request.urlopen(sentinel.rstrip("/") + "/_course/stats", timeout=10) as answer:
        return json.load(answer)["requests"]


def _greedy_answers(questions: list[str], reference: str) -> dict[str, str]:
    """The grader's greedy answer to each question, one chat message each: asked of the last engine the script
    built from the `reference` folder (the same weights and settings: no load), else of an engine of the grader's."""
    from vllm import LLM, SamplingParams

    def ask(llm) -> dict[str, str]:
        params = SamplingParams(temperature=0, max_tokens=24)
        return {q: LLM.chat(llm, [{"role": "user", "content": q}], params, use_tqdm=False)[0].outputs[0].text
                for q in questions}

    wanted = os.path.realpath(reference)
    for llm in reversed(built):
        if os.path.realpath(_model(llm)) == wanted:
            try:
                return ask(llm)
            except Exception:  # noqa: BLE001 - e.g. the script shut its engine down: load one
                break
    from vllm_course.engine import machine_kwargs
    return ask(LLM(model=reference, **machine_kwargs()))


def main(report_path: str, script: str, sentinel: str, jobs: list[dict], reference: str = "") -> None:
    after_import("vllm.entrypoints.llm", _watch)  # however the script imports vLLM
    namespace = runpy.run_path(script, run_name="learner_script")  # its __main__ block stays off
    results = []
    for job in jobs:
        first_engine, first_text, requests = len(built), len(generated), _requests(sentinel)
        try:
            returned, error = namespace["main"](job["model"], job["question"]), None
        except BaseException as exc:  # noqa: BLE001 - reported; the grader decides
            returned, error = None, f"{type(exc).__name__}: {str(exc)[-600:]}"
        results.append({**job, "returned": returned, "error": error,
                        "engines": [_model(llm) for llm in built[first_engine:]], "generated": generated[first_text:],
                        "requests": None if requests is None else _requests(sentinel) - requests})
    from huggingface_hub import constants
    report = {"hf_offline": bool(constants.HF_HUB_OFFLINE), "jobs": results, "expected": {}}
    if reference:
        watching[0] = False
        report["expected"] = _greedy_answers([job["question"] for job in jobs], reference)
    with open(report_path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, default=repr)
    import psutil
    for child in psutil.Process().children(recursive=True):  # e.g. an engine process the script started
        child.kill()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the report is written: skip the ~3 s an interpreter holding vLLM takes to shut down


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), *sys.argv[5:6])
