"""The package metadata: conda and pip agree; the console script and the Colab-safe bounds are in place."""
import re
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _split(req: str):
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(;.*)?$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def _pyproject_requirements():
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in ("book", "dev"):
        reqs += project["optional-dependencies"][extra]
    return dict(_split(r) for r in reqs if ";" not in r)  # markers are pip-only back-ports (tomli on 3.10)


def _environment_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            name, spec = _split(item.replace("=", "==", 1) if re.match(r"^[\w\-]+=[^=<>]", item) else item)
            if name in ("python", "pip", "-e"):
                continue
            reqs[name] = spec
    return reqs


def test_environment_yml_agrees_with_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_tensorflow_and_numpy_have_lower_bounds_only():
    reqs = _pyproject_requirements()
    for name in ("tensorflow", "numpy"):
        assert reqs[name].startswith(">=") and "<" not in reqs[name] and "," not in reqs[name], reqs[name]


def test_console_script_and_module_entry_point():
    assert PYPROJECT["project"]["scripts"]["sagan-tut"] == "sagan_tut.cli:main"
    assert (ROOT / "sagan_tut" / "__main__.py").exists()


@pytest.mark.parametrize("extra", ["book", "dev", "kaggle"])
def test_extras_exist(extra):
    assert PYPROJECT["project"]["optional-dependencies"][extra]
