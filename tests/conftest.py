"""Settings for the whole test session.

``jit_compile="auto"`` reads a measured choice from ``~/.cache/sagan_tut`` (written by
``benchmarks/bench_train.py``). Tests must build the same step on every machine, so they get an empty cache of
their own and no ``$SAGAN_TUT_JIT_COMPILE`` override; tests of the choice itself point the cache elsewhere.
"""
import os
import tempfile

os.environ["SAGAN_TUT_PERF_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="sagan_tut_perf_"), "jit_choice.json")
os.environ.pop("SAGAN_TUT_JIT_COMPILE", None)


# Under pytest-xdist (`make test`: two workers, one test file per worker at a time) the files run in collection
# order, so a long file collected last leaves the other worker idle while it finishes. The longest files go first
# (measured: `pytest tests --durations=80`); the order of everything else is unchanged, and nothing depends on it.
RUN_FIRST = ("test_notebooks_smoke.py", "test_train.py", "test_resume.py", "test_reference.py", "test_cli.py",
             "test_registration.py", "test_ablation.py", "test_ch45_chapters.py", "test_ema.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(RUN_FIRST)))  # stable: the rest keep their order
