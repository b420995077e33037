"""Find numbers typed by hand in a notebook's prose.

A number in a markdown cell that a cell computes must be inserted with myst-nb's glue role
({glue:text}`name:.2f`), so that re-executing the notebook cannot contradict the text. This checker lists every
number in the markdown cells (inside $math$ too) that is neither glued nor excused. A number is excused if

- it appears literally in one of the notebook's code cells (a setting: 4e-4, 128, 0.9; compared by value);
- it is a small structural integer: 0-10, a power of two up to 4096 (sizes, widths), a year 1950-2030;
- it is part of a name rather than a quantity: an identifier or label (`02_spectral`, ex-ch01-64, float32, T4),
  a role's target ({cite}`miyato2018`, {doc}`...`), a link target, inline code, a directive's option line, a
  fenced code block, a version after a software name (Keras 3.15), a section/table/figure/equation number;
- it is listed in tests/prose_numbers_allow.json for this notebook, with the reason (for a fact from a paper:
  its citation key). Keep that list short: a number the notebook computes belongs in glue, not there.

    python tests/prose_numbers.py notebooks/01_gans_and_dcgan.ipynb [...]   # prints what it flags; exit 1 if any
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ALLOW_FILE = Path(__file__).with_name("prose_numbers_allow.json")

# Everything that can hold digits without being a quantity of the text, removed before numbers are looked for.
_FENCE = re.compile(r"^(`{3,}|~{3,})(?!\{)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)  # ```python ... ``` (not ```{dir})
_DIRECTIVE_LINE = re.compile(r"^[ \t]*(?:`{3,}|:{3,})\{[^}\n]*\}[^\n]*$|^[ \t]*:[\w-]+:[^\n]*$", re.M)
_ROLE = re.compile(r"\{[\w:.-]+\}`[^`]*`")  # {glue:text}`x:.2f`, {cite:p}`key`, {ref}`label`, {doc}`page`
_CODE = re.compile(r"(`+)(.+?)\1", re.S)  # inline code
_LINK_TARGET = re.compile(r"\]\([^)\s]*\)|\]\[[^\]]*\]|<[^>\n]*>|https?://\S+")
_LABEL = re.compile(r"^\([\w:.-]+\)=[ \t]*$", re.M)  # (mode-collapse)=
_VERSION = re.compile(
    r"\b(?:Python|Keras|TensorFlow|TF|PyTorch|torch|NumPy|SciPy|JAX|CUDA|cuDNN|myst-nb|Sphinx|Ubuntu|Debian|"
    r"Chromium|Jupyter(?: Book)?|Colab|Zen|AVX|version|v)\s*v?\d+(?:\.\d+)*(?:\s*[-–]\s*\d+(?:\.\d+)*)?")
_STRUCTURAL = re.compile(
    r"\b(?:[Cc]hapters?|[Ss]ections?|Sec\.|§|[Tt]ables?|[Ff]igures?|Fig\.|[Ee]q\.|[Ee]quations?|[Ii]tems?|"
    r"[Aa]ppendi(?:x|ces)|[Aa]lgorithm|[Ee]xercises?|[Ll]ines?|pp?\.)\s*\(?\d+(?:\.\d+)*[a-z]?\)?"
    r"(?:\s*(?:[-–,]|and|or)\s*\d+(?:\.\d+)*)*")
_TEX_COMMAND = re.compile(r"\\(?:[dt]?frac\d\d|[A-Za-z]+)")  # \frac, \text: names, never numbers; \tfrac12 is 1/2
# A token of letters, digits, '_' joined by '.', '-' or a thousands comma; digits inside it are examined.
_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:(?:[.\-]|,(?=\d{3}(?!\d)))[A-Za-z0-9_]+)*")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:_\d+)*(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+")
_UNITS = ("s", "ms", "us", "µs", "ns", "min", "h", "px", "x", "k", "K", "M", "G", "B", "KB", "MB", "GB", "TB",
          "GFLOP", "TFLOP", "Hz", "GHz", "d", "D", "m")
_ORDINAL = re.compile(r"^\d+(?:st|nd|rd|th)$")
_NUMBER_UNIT = re.compile(r"^(" + _NUMBER.pattern + r")(" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")$")
_TIMES_PREFIX = re.compile(r"^[xX](" + _NUMBER.pattern + r")$")  # x1.22
_SIZE = re.compile(r"^(\d+)x(\d+)$")  # 64x64
# Plot cosmetics are not settings a text would quote: figsize=(6, 2.3) must not excuse "2.3 minutes".
_COSMETIC = re.compile(r"\b(?:figsize|fontsize|alpha|lw|linewidth|dpi|pad|wspace|hspace|markersize|ms|fraction|shrink|"
                       r"aspect|width_ratios|height_ratios|bbox_to_anchor|labelsize|rotation|zorder)\s*=\s*"
                       r"(?:\([^()]*\)|\[[^\[\]]*\]|[\d.]+)")
# A run time or a metric is measured, never a setting: a code literal with the same value does not excuse it.
_TIME_AFTER = re.compile(r"\s*(?:s|sec|seconds?|ms|min|minutes?|h|hours?|days?)\b(?!-)")
_METRIC_BEFORE = re.compile(r"\b(?:FID|KID|IS)(?:\s*(?:of|=|≈|~|is|was|around|about))?\s*\$?\s*$")
# A ratio (16×, ×16.3, 40 %) is a claim whatever its size; 4×4 is a size.
_RATIO_AFTER = re.compile(r"[ \t]*(?:×|x(?![A-Za-z0-9])|times\b|-fold\b|%|per ?cent)(?![ \t]*\d)")
_RATIO_BEFORE = re.compile(r"(?<![\d\s])[ \t]*(?:×|\bx)[ \t]*$")
_CODE_NUMBER = re.compile(r"(?<![\w.])(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


@dataclass(frozen=True)
class Finding:
    cell: int  # index in nb.cells
    number: str  # as written
    context: str  # the surrounding prose

    def __str__(self):
        return f"c{self.cell}: {self.number!r} in ...{self.context}..."


def value_of(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("_", ""))
    except ValueError:
        return None


def code_values(nb) -> set[float]:
    """Every numeric literal in the notebook's code cells (comments included: `# beta1 0.5` names a setting)."""
    values = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            for m in _CODE_NUMBER.finditer(_COSMETIC.sub(" ", cell.source)):
                v = value_of(m.group())
                if v is not None:
                    values.add(v)
    return values


def is_structural(v: float) -> bool:
    if v != int(v):
        return False
    v = int(v)
    return 0 <= v <= 10 or (v <= 4096 and v & (v - 1) == 0) or 1950 <= v <= 2030


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace each match by spaces of the same length, so positions (for the context) stay where they were."""
    return pattern.sub(lambda m: " " * len(m.group()), text)


def _inline_code(m: re.Match) -> str:
    inner = m.group(2).strip()
    return m.group() if _NUMBER.fullmatch(inner) else " " * len(m.group())  # `0.617` is prose in disguise


def masked_prose(source: str) -> str:
    """The markdown with everything that is not prose (or math) blanked out."""
    # 4\times 4 and 65{,}536 (TeX's thousands separator) as plain text, keeping every position where it was
    text = re.sub(r"(\d)\{,\}(\d{3})", r"\1,\2  ", source.replace("\\times", "×     "))
    text = _blank(text, _FENCE)
    text = _blank(text, _DIRECTIVE_LINE)
    text = _blank(text, _LABEL)
    text = _blank(text, _ROLE)
    text = _CODE.sub(_inline_code, text)
    for pattern in (_LINK_TARGET, _VERSION, _STRUCTURAL, _TEX_COMMAND):
        text = _blank(text, pattern)
    return text


def numbers_in(text: str):
    """Yield (start, end, number-as-written) for each quantity in masked prose."""
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if not any(ch.isdigit() for ch in tok):
            continue
        if _NUMBER.fullmatch(tok):
            yield m.start(), m.end(), tok
        elif _ORDINAL.match(tok):
            continue
        elif mm := _NUMBER_UNIT.match(tok) or _TIMES_PREFIX.match(tok):
            yield m.start(), m.end(), mm.group(1)
        elif mm := _SIZE.match(tok):
            yield m.start(), m.end(), mm.group(1)
            yield m.start(), m.end(), mm.group(2)
        elif re.fullmatch(r"\d+(?:\.\d+)?-[A-Za-z]+(?:-[A-Za-z]+)*", tok):  # 2-core, 3-seed: a quantity
            yield m.start(), m.end(), tok.split("-")[0]
        # else: an identifier (ex-ch01-64, float32, 02_spectral, T4, x_1): a name, not a quantity


def load_allowlist(path: Path = ALLOW_FILE) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def check_text(source: str, cell: int, excused: set, allowed: set = frozenset(), strict: bool = False):
    """Findings in one markdown text. ``excused``: values set in code; ``allowed``: the allowlist's values.
    ``strict`` (exercise solutions, whose numbers are results): only 0-10, the allowlist and glue excuse."""
    findings = []
    text = masked_prose(source)
    for start, end, number in numbers_in(text):
        v = value_of(number)
        if v is None or v in allowed:
            continue
        measured = bool(_TIME_AFTER.match(text, end) or _METRIC_BEFORE.search(text[:start]))
        ratio = bool(_RATIO_AFTER.match(text, end) or _RATIO_BEFORE.search(text[:start]))
        if strict:
            if v == int(v) and 0 <= v <= 10 and not (measured or ratio):
                continue
        elif not measured and ((is_structural(v) and not ratio) or v in excused):
            continue
        context = " ".join(source[max(0, start - 40):end + 40].split())
        findings.append(Finding(cell, number, context))
    return findings


def allowed_values(name: str, allow: dict | None = None) -> set:
    allow = load_allowlist() if allow is None else allow
    return {value_of(k) for k in allow.get(name, {}) if not k.startswith("_")}


def check_notebook(nb, name: str, allow: dict | None = None) -> list[Finding]:
    """Findings for notebook ``nb`` (an nbformat node); ``name`` is its file stem, the allowlist's key."""
    allowed, excused = allowed_values(name, allow), code_values(nb)
    findings = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            findings += check_text(cell.source, i, excused, allowed)
    return findings


def check_path(path) -> list[Finding]:
    import nbformat

    path = Path(path)
    return check_notebook(nbformat.read(path, as_version=4), path.stem)


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print(__doc__)
        return 2
    bad = 0
    for path in paths:
        findings = check_path(path)
        bad += len(findings)
        for f in findings:
            print(f"{path}: {f}")
    if bad:
        print(f"{bad} number(s) typed in prose: glue them ({{glue:text}}`key:.2f`), assert them in a cell, or, "
              f"for a fact from a paper, add them with the citation key to {ALLOW_FILE.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
