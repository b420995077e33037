"""Settings for the whole test session.

``jit_compile="auto"`` reads a measured choice from ``~/.cache/sagan_tut`` (written by
``benchmarks/bench_train.py``). Tests must build the same step on every machine, so they get an empty cache of
their own and no ``$SAGAN_TUT_JIT_COMPILE`` override; tests of the choice itself point the cache elsewhere.
"""
import os
import tempfile

os.environ["SAGAN_TUT_PERF_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="sagan_tut_perf_"), "jit_choice.json")
os.environ.pop("SAGAN_TUT_JIT_COMPILE", None)
