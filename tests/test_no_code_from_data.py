"""Nothing in forkq can turn message data into code: no pickle, marshal or shelve (or their
kin), no eval, exec, compile or __import__, no unsafe yaml loader, and no import by a computed
name except at the allowed places below, where the name never comes from a message.

The check reads the source's syntax trees (not a text search), so a mention in a comment or a
string does not count and `eval` used as a value (`f = eval`) does."""

from __future__ import annotations

import ast
from pathlib import Path

import msgspec
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "forkq"

# Modules that rebuild arbitrary objects (and so run code) from bytes.
OBJECT_LOADERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
OBJECT_LOADERS |= {"jsonpickle"}
CODE_BUILTINS = {"eval", "exec", "compile", "__import__"}
YAML_UNSAFE = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
IMPORT_BY_NAME = {("importlib", "import_module"), ("importlib", "__import__")}

# (file under src/forkq, enclosing function, what) -> why the name it uses is not message data
ALLOWED = {
    ("worker/loader.py", "_import", "importlib.import_module"): (
        "imports the app named by `-A module[:attribute]`, and the fixed submodules (SUBMODULES) "
        "of that package where `-A package` looks for it: the command line's or the embedding "
        "program's choice, read once at start-up, before any message"
    ),
    ("task_modules.py", "import_named", "importlib.import_module"): (
        "imports the modules the app's own source names in `include=` and `autodiscover_tasks` "
        "(and `<package>.tasks`): the app author's choice, imported when the app is loaded, "
        "before any message"
    ),
    ("cli/main.py", "OneLineErrors.get_command", "importlib.import_module"): (
        "imports a module from the fixed LAZY_COMMANDS table, keyed by a command-line word"
    ),
    ("config_object.py", "_resolve", "importlib.import_module"): (
        "imports the settings module a program names in `app.config_from_object(...)`: the "
        "program's own code chooses it, never a message"
    ),
}


class Finding(msgspec.Struct, frozen=True):
    path: str
    function: str  # qualified name of the enclosing function, "" at module level
    what: str
    line: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.function, self.what)


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[str] = []
        self.found: list[Finding] = []

    def _add(self, node: ast.expr | ast.stmt, what: str) -> None:
        self.found.append(Finding(self.path, ".".join(self.scope), what, node.lineno))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in OBJECT_LOADERS:
                self._add(node, f"import {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            if module.split(".")[0] in OBJECT_LOADERS:
                self._add(node, f"from {module} import {alias.name}")
            elif (module == "yaml" and alias.name in YAML_UNSAFE) or (
                (module, alias.name) in IMPORT_BY_NAME
            ):
                self._add(node, f"{module}.{alias.name}")
            elif module == "builtins" and alias.name in CODE_BUILTINS:
                self._add(node, alias.name)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in CODE_BUILTINS:
            self._add(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            owner = node.value.id
            if (
                (owner == "yaml" and node.attr in YAML_UNSAFE)
                or (owner, node.attr) in IMPORT_BY_NAME
                or (owner == "builtins" and node.attr in CODE_BUILTINS)
            ):
                self._add(node, f"{owner}.{node.attr}")
        self.generic_visit(node)


def scan(source: str, path: str) -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.found


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_nothing_in_forkq_turns_data_into_code() -> None:
    files = source_files()
    assert len(files) > 40, f"only {len(files)} files under {SRC}"
    found = [
        finding
        for path in files
        for finding in scan(path.read_text(), path.relative_to(SRC).as_posix())
    ]
    unexplained = [f for f in found if f.key not in ALLOWED]
    assert not unexplained, "\n".join(
        f"src/forkq/{f.path}:{f.line} ({f.function or 'module'}): {f.what}" for f in unexplained
    )
    assert {f.key for f in found} == set(ALLOWED), "an allowed place is gone: drop its entry"


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("import pickle", "import pickle"),
        ("import marshal as m", "import marshal"),
        ("from shelve import open", "from shelve import open"),
        ("from _pickle import loads", "from _pickle import loads"),
        ("def f(body):\n    return eval(body)", "eval"),
        ("run = exec", "exec"),
        ("code = compile('1', 'x', 'eval')", "compile"),
        ("m = __import__(name)", "__import__"),
        ("import builtins\nbuiltins.eval(s)", "builtins.eval"),
        ("import yaml\nyaml.load(s)", "yaml.load"),
        ("from yaml import unsafe_load", "yaml.unsafe_load"),
        ("import importlib\nimportlib.import_module(name)", "importlib.import_module"),
        ("from importlib import import_module", "importlib.import_module"),
    ],
)
def test_the_scan_sees_each_form(source: str, what: str) -> None:
    assert [f.what for f in scan(source, "x.py")] == [what]


def test_the_scan_ignores_words_and_safe_loaders() -> None:
    source = '"""never pickled, never eval()ed"""\n# exec(x)\nimport yaml\nyaml.safe_load(s)\n'
    assert scan(source, "x.py") == []
