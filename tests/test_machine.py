"""Does the machine probe read this machine's real ISA and vLLM's real kernel library?

No flag is faked in these tests: the probe's answer is checked against /proc/cpuinfo and against
what vLLM really does. The one exception is labelled: on an AVX-512 machine a child process forces
vLLM's ISA check to AVX2, so the AVX2 library (which runs on AVX-512 CPUs too) is exercised there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_course import config, engine, envcheck, machine
from vllm_course.machine import QuantSupport, cpu_isa, quant_support


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture(scope="module")
def support() -> QuantSupport:
    if engine.has_gpu():
        pytest.skip("a CUDA GPU is visible: these tests check the CPU probe")
    return quant_support()


class TestRealIsa:
    def test_does_the_isa_agree_with_proc_cpuinfo(self, support):
        """Is the ISA the probe names the one /proc/cpuinfo's flags imply?"""
        flags = _cpu_flags()
        expected = "AVX2" if "avx512f" not in flags else ("AVX512_BF16" if "avx512_bf16" in flags else "AVX512")
        assert support.isa == cpu_isa() == expected

    def test_is_the_library_the_one_vllm_loads_for_this_isa(self, support):
        """Is the named library the module vLLM imported for this ISA?"""
        assert support.library == {"AVX2": "vllm._C_AVX2", "AVX512": "vllm._C_AVX512", "AVX512_BF16": "vllm._C"}[support.isa]
        import vllm

        assert (Path(vllm.__file__).parent / f"{support.library.split('.')[1]}.abi3.so").is_file()

    def test_does_w4a16_follow_the_library(self, support):
        """AVX2: no 4-bit kernel and the W8A8 model chosen; AVX-512: 4-bit kernel and GPTQ chosen."""
        import torch

        assert support.w4a16 == hasattr(torch.ops._C, "cpu_gemm_wna16")
        assert support.w8a8 and hasattr(torch.ops._C, "onednn_scaled_mm")
        if support.isa == "AVX2":
            assert not support.w4a16 and support.quantized_model == config.W8A8_MODEL
            assert "no cpu_gemm_wna16" in support.why_w4a16
        else:
            assert support.w4a16 and support.quantized_model == config.GPTQ_MODEL

    def test_does_machine_kwargs_pick_the_dtype_of_this_isa(self, support):
        """float32 on AVX2 (emulated bf16), float16 with AMX (vLLM's AMX bf16 attention), else the model's?"""
        import torch

        kwargs = engine.machine_kwargs()
        if support.isa == "AVX2":
            assert kwargs["dtype"] == "float32" and support.dtype == "float32"
        elif torch.cpu._is_amx_tile_supported():
            assert kwargs["dtype"] == "float16" and support.dtype == "float16"
            assert machine.w8a8_dtype() == "bfloat16"
        else:
            assert "dtype" not in kwargs and support.dtype == "auto"
        assert engine.machine_kwargs(dtype="bfloat16")["dtype"] == "bfloat16"

    def test_does_the_text_say_what_runs_and_why(self, support):
        """Does str() name the ISA, the library, both formats and the chosen model?"""
        text = str(support)
        for part in (support.isa, support.library, "W4A16", "W8A8", support.quantized_model):
            assert part in text


class TestEnvCheck:
    def test_does_the_env_check_list_the_quantized_kernels(self, support):
        """Do the env check's rows carry the probe's answers, optional where a format cannot run?"""
        rows = {c.name: c for c in envcheck.quant_checks()}
        assert rows["GPTQ/AWQ 4-bit (W4A16)"].ok == support.w4a16
        assert rows["GPTQ/AWQ 4-bit (W4A16)"].required is False
        assert rows["int8 W8A8"].ok == support.w8a8
        assert rows["quantized course model"].found == support.quantized_model
        assert support.isa in rows["machine"].found

    def test_does_the_cli_print_them(self, support):
        """Does `python -m vllm_course env check` print the 4-bit row with the probe's verdict?"""
        out = subprocess.run([sys.executable, "-m", "vllm_course", "env", "check"], capture_output=True, text=True,
                             timeout=120).stdout
        line = next(l for l in out.splitlines() if l.startswith("GPTQ/AWQ 4-bit"))
        assert ("runs" in line) == support.w4a16, line


# A labelled test aid, not a fake: AVX2 code runs on AVX-512 CPUs, so a child process whose ISA check
# is forced to AVX2 (scripts/emulate_avx2, which scripts/avx2_check.sh uses too) loads vLLM's real AVX2
# library and shows that path where only AVX-512 machines exist.
_EMULATE_AVX2 = Path(__file__).resolve().parents[1] / "scripts" / "emulate_avx2"
_PROBE = "from vllm_course.machine import quant_support; s = quant_support(); print(s.isa, s.library, s.w4a16, s.w8a8)"


class TestCoreShares:
    def test_do_two_workers_split_the_cores_this_process_may_use(self):
        """Are two workers' core shares disjoint and together every core this process may use (both the
        same, all of them, where there is only one)?"""
        cores = sorted(os.sched_getaffinity(0))
        shares = [machine.core_share(n, 2) for n in range(2)]
        if len(cores) >= 2:
            assert sorted(shares[0] + shares[1]) == cores and not set(shares[0]) & set(shares[1]), shares
        else:
            assert shares == [cores, cores]

    def test_does_a_process_started_from_a_pinned_thread_run_on_that_threads_share(self):
        """`build_all` pins each quantizer's thread to a core share: does the process that thread starts inherit
        the share, while the rest of this process keeps every core?"""
        import json
        import threading

        cores, share, seen = sorted(os.sched_getaffinity(0)), machine.core_share(1, 2), []
        if share == cores:  # one core here (a pinned pytest-xdist worker): take another core of the machine
            share = [c for c in range(os.cpu_count() or 1) if c not in cores][:1]

        def start_child() -> None:
            try:
                os.sched_setaffinity(0, share)
            except OSError as exc:  # e.g. a container whose cpuset lacks that core
                seen.append(exc)
                return
            seen.append(subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                                       capture_output=True, text=True, timeout=60).stdout)

        if not share:
            pytest.skip("this machine has one core: no share can differ from this process's cores")
        thread = threading.Thread(target=start_child)
        thread.start()
        thread.join()
        if isinstance(seen[0], OSError):
            pytest.skip(f"this process may not run on core {share}: {seen[0]}")
        assert share != cores and json.loads(seen[0]) == share
        assert sorted(os.sched_getaffinity(0)) == cores


class TestForcedAvx2Library:
    def test_does_the_avx2_library_lack_the_4bit_kernel(self, support):
        """With vLLM's ISA check forced to AVX2 in a child: library _C_AVX2, no W4A16, W8A8 present?"""
        if support.isa == "AVX2":
            pytest.skip("this CPU is AVX2: TestRealIsa checked the AVX2 library natively")
        path = os.pathsep.join(filter(None, [str(_EMULATE_AVX2), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "ONEDNN_MAX_CPU_ISA": "AVX2"}
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, env=env)
        assert out.stdout.split()[-4:] == ["AVX2", "vllm._C_AVX2", "False", "True"], out.stderr[-2000:]
