"""The structure the code keeps as it grows: layers without import cycles, a lean served runtime and
front, child programs that are modules, one grammar, a typed manifest, one store of versions, and a
target registry the front ends read instead of naming targets."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import deploykit

PACKAGE = Path(deploykit.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, modules: dict) -> set[str]:
    """Every deploykit module ``module`` imports, at the top or inside functions (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            prefix = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level else node.module
            for alias in node.names:
                target = f"{prefix}.{alias.name}"
                found.add(target if target in modules else prefix)
    return {m for m in found if m in modules and m != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_cycles_even_inside_functions(graph):
    assert _cycles(graph) == []


def test_private_modules_never_import_the_public_facade(graph):
    offenders = sorted(m for m, deps in graph.items() if "deploykit" in deps)
    assert offenders == []


def test_the_served_runtime_and_the_front_import_only_themselves(graph):
    for layer in ("deploykit._runtime", "deploykit._front"):
        members = [m for m in graph if m == layer or m.startswith(layer + ".")]
        outside = {m: sorted(d for d in graph[m] if not d.startswith(layer)) for m in members}
        assert {m: d for m, d in outside.items() if d} == {}, layer


def test_the_front_imports_no_heavy_library():
    code = ("import sys; sys.argv=['x']; import deploykit._front.app, deploykit._front.serve; "
            "print(sorted(m for m in ('numpy', 'pandas', 'bentoml', 'sklearn', 'httpx', 'uvicorn', 'fastapi') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_and_magic_share_the_grammar_without_importing_each_other(graph):
    assert "deploykit._grammar" in graph["deploykit._cli"] and "deploykit._grammar" in graph["deploykit._magic"]
    assert "deploykit._magic" not in graph["deploykit._cli"] and "deploykit._cli" not in graph["deploykit._magic"]
    assert not any(m in graph["deploykit._grammar"] for m in ("deploykit._cli", "deploykit._magic", "deploykit._commands"))


def _runs_python(node: ast.List) -> bool:
    first = node.elts[0] if node.elts else None
    return (isinstance(first, ast.Attribute) and ast.unparse(first) == "sys.executable") or (
        isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("python"))


def test_child_programs_are_modules_not_strings():
    """No ``python -c <program>`` in the library: code run in another process is a module (-m) or a file."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.List) and _runs_python(node) and any(
                    isinstance(e, ast.Constant) and e.value == "-c" for e in node.elts):
                pytest.fail(f"{path.relative_to(PACKAGE)} line {node.lineno} runs a program given as a string")


def test_front_ends_do_not_name_targets():
    """The CLI, magic, panel, run, the commands and the release layer take target names from the registry:
    none compares a value with a target's name, or lists the targets itself."""
    names = {"docker", "local", "swarm", "kubernetes"}
    for name in ("_cli.py", "_magic.py", "_panel.py", "_panel_experiment.py", "_run.py", "_commands.py", "_grammar.py",
                 "_deploy.py", "_deployment.py", "_release.py", "_rollback.py", "_experiments.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                constants = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]
                assert not names & set(constants), f"{name} line {node.lineno} branches on a target's name"
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                constants = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                assert len(names & constants) < 2, f"{name} line {node.lineno} lists targets itself"


def test_a_new_target_is_one_registry_entry(monkeypatch):
    """A target added to the registry appears in the CLI, the magic and the panel without edits there."""
    from deploykit import _targets
    from deploykit._grammar import build_parser

    monkeypatch.setitem(_targets.REGISTRY, "mars", "deploykit._targets.local:LocalTarget")
    for prog in ("deploykit", "%deploy"):
        assert build_parser(prog).parse_args(["deploy", "m", "--target", "mars"]).target == "mars"
        assert build_parser(prog).parse_args(["run", "nb.ipynb", "--target", "mars"]).target == "mars"
    assert "mars" in _targets.names()


def test_manifest_round_trip_and_formats(tmp_path):
    from deploykit._runtime.manifest import FORMAT, Artifact, Manifest
    from deploykit.exceptions import IntegrityError

    manifest = Manifest(name="m", version="2", task="binary", estimator="x.Y", schema={"columns": [], "max_batch": 5},
                        artifacts={"model": Artifact("model.skops", "ab" * 32, "skops", ["t"])}, classes=[0, 1])
    manifest.serving.fast_path = {"enabled": True}
    written = manifest.write(tmp_path)
    again = Manifest.read(tmp_path)
    assert again == manifest and again.serving.compiled and again.model.trusted_types == ["t"]
    assert json.loads(written.read_text())["format"] == FORMAT
    assert manifest["schema"] == {"columns": [], "max_batch": 5} and manifest.get("service_name") == "m"  # the dict view
    legacy = {**manifest.to_dict(), "format": 1, "bento": {"tag": "m:v2", "path": "/x"}, "service_name": "m"}
    assert Manifest.from_dict(legacy) == manifest  # format 1 upgrades
    with pytest.raises(IntegrityError, match="newer than this deploykit reads"):
        Manifest.from_dict({**manifest.to_dict(), "format": FORMAT + 1})
    with pytest.raises(IntegrityError, match="is not a deploykit package"):
        Manifest.read(tmp_path / "nowhere")


def test_one_store_of_numbered_versions(tmp_path, monkeypatch):
    from deploykit import _store
    from deploykit._runtime.manifest import FILENAME

    monkeypatch.setenv("DEPLOYKIT_HOME", str(tmp_path))
    reserved = [_store.reserve("s") for _ in range(3)]
    assert [v for v, _ in reserved] == ["1", "2", "3"] and _store.versions("s") == []
    for version, work in reserved[:2]:
        (work / "model").mkdir()
        (work / "model" / FILENAME).write_text("{}")
        _store.publish(work, "s", version)
    _store.discard(reserved[2][1])
    assert _store.versions("s") == [1, 2] and _store.newest("s") == 2 and _store.previous("s", 2) == 1
    assert _store.reserve("s")[0] == "3" and _store.every_version() == {("s", "1"), ("s", "2")}
    # two processes reserving at once get different numbers
    code = "import deploykit._store as s; print(s.reserve('race')[0])"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**__import__("os").environ, "DEPLOYKIT_HOME": str(tmp_path)}) for _ in range(4)]
    assert sorted(int(p.communicate()[0]) for p in procs) == [1, 2, 3, 4]
