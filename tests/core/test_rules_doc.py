"""docs/rules.md stays true to the code: every rule a comment, docstring or message of the product
cites ("R14") is a rule there, the rules are numbered R1, R2, ... without a gap, and every path,
test and model it names exists."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from mbxtui.core import models

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "rules.md"
# The token types that hold text a person reads: comments, and strings (docstrings, messages);
# Python 3.12 splits an f-string into FSTRING_* tokens.
TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING} | {
    getattr(tokenize, name) for name in ("FSTRING_MIDDLE",) if hasattr(tokenize, name)
}
CITATION = re.compile(r"\bR(\d+)(?:\s*[–-]\s*R(\d+))?\b")  # R14, or a range R14–R16
RULE_HEADING = re.compile(r"^### R(\d+) \S", re.MULTILINE)
BACKTICKED = re.compile(r"`([^`\s]+)`")
REPOSITORY_PATH = re.compile(r"^(?:mbxtui|tests|docs|bench|scripts)/")
MODEL_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
MODEL_FIELD = re.compile(r"^([A-Z][A-Za-z]+)\.([a-z_]+)$")


def rules_text() -> str:
    return RULES.read_text(encoding="utf-8")


def cited_rules(source: str) -> set[int]:
    """The rule numbers cited in the comments and strings of one module."""
    cited: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in TEXT_TOKENS:
            continue
        for first, last in CITATION.findall(token.string):
            cited.update(range(int(first), int(last or first) + 1))
    return cited


def citations_in_the_product() -> dict[int, list[str]]:
    """Rule number -> the modules under mbxtui/ that cite it."""
    modules: dict[int, list[str]] = {}
    for path in sorted((ROOT / "mbxtui").rglob("*.py")):
        for number in cited_rules(path.read_text(encoding="utf-8")):
            modules.setdefault(number, []).append(str(path.relative_to(ROOT)))
    return modules


def rule_numbers() -> list[int]:
    return [int(number) for number in RULE_HEADING.findall(rules_text())]


def named_paths() -> list[str]:
    return sorted({token for token in BACKTICKED.findall(rules_text()) if REPOSITORY_PATH.match(token)})


def records_section() -> str:
    text = rules_text()
    return text[text.index("## Records"):text.index("\n## ", text.index("## Records") + 1)]


def test_citations_are_found_in_comments_strings_and_ranges() -> None:
    source = '"""Rules (R1, R9–R11)."""\n# see R20\nx = "R7"\nR3 = 1\n'
    assert cited_rules(source) == {1, 7, 9, 10, 11, 20}


def test_the_product_cites_rules() -> None:
    assert len(citations_in_the_product()) >= 20


def test_the_rules_are_numbered_from_r1_without_a_gap_or_a_repeat() -> None:
    numbers = rule_numbers()
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 35


def test_every_rule_the_product_cites_is_in_the_rules() -> None:
    documented = set(rule_numbers())
    missing = {f"R{number}": modules for number, modules in citations_in_the_product().items()
               if number not in documented}
    assert not missing, f"cited in the code but not a rule of docs/rules.md: {missing}"


def test_the_rules_name_paths() -> None:
    paths = named_paths()
    assert any(path.startswith("mbxtui/") for path in paths)
    assert any("::" in path for path in paths)


def test_every_path_the_rules_name_exists() -> None:
    """A path with ``*`` must match at least one file or folder; ``file::test_name`` must be a test
    defined in that file."""
    missing = []
    for named in named_paths():
        path, _, test_name = named.partition("::")
        matches = sorted(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
        if not matches:
            missing.append(named)
        elif test_name and not re.search(rf"^(?:async )?def {re.escape(test_name)}\(",
                                         matches[0].read_text(encoding="utf-8"), re.MULTILINE):
            missing.append(named)
    assert not missing, f"named in docs/rules.md but not in the repository: {missing}"


def test_every_model_the_rules_name_is_in_the_schema() -> None:
    names = [token for token in BACKTICKED.findall(records_section()) if MODEL_NAME.match(token)]
    assert "Mailbox" in names
    assert [name for name in names if not isinstance(getattr(models, name, None), type)] == []
    fields = [MODEL_FIELD.match(token) for token in BACKTICKED.findall(rules_text())]
    unknown = [match.group(0) for match in fields
               if match and not hasattr(getattr(models, match.group(1), None), match.group(2))]
    assert unknown == []
