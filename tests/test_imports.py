"""The package's import graph has no cycle (function-level imports included), the modules that
read run directories never import jax, the library never imports the benchmark tools, and no
file of the repository names a folder of the machine or tooling it was developed on."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxmnist"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {jaxmnist modules it imports anywhere in its source}}``."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                # "from jaxmnist.runs import rundir" names the module jaxmnist.runs.rundir.
                if target in modules and target != name:
                    graph[name].add(target)
    for name in graph:  # importing a.b runs a/__init__ first, which is not a dependency on a.b
        graph[name] = {t for t in graph[name] if not (name.startswith(t + ".") and t != "")}
    graph["jaxmnist"] = set()  # the package's own __init__ holds no imports of its modules
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "jaxmnist.runs.rundir" in graph and graph["jaxmnist.runs.tables"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_run_directory_readers_do_not_depend_on_jax_modules():
    graph = import_graph()
    jax_modules = {name for name in graph if name.startswith("jaxmnist.models")}
    jax_modules |= {f"jaxmnist.engine.{m}" for m in ("program", "placement", "fit", "evaluate",
                                                    "optim", "losses", "checkpoint",
                                                    "distributed")}
    readers = ["jaxmnist.runs.rundir", "jaxmnist.runs.runview", "jaxmnist.runs.tables",
               "jaxmnist.runs.figures", "jaxmnist.report", "jaxmnist.engine.hooks",
               "jaxmnist.data"]
    seen, todo = set(), list(readers)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    assert jax_modules <= graph.keys() and "jaxmnist.runs.tables" in seen
    assert not seen & jax_modules, seen & jax_modules
    # The study schema reads its choice lists without the training loop (DESIGN.md).
    todo, seen = ["jaxmnist.groups"], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    assert not seen & jax_modules, seen & jax_modules


# The layers of docs/architecture.md, upstream first: a module may import its own layer and the
# ones above it, never one below (data -> models -> engine -> run directory -> serve; the API
# and the command lines on top). The package's shared helpers (checks, trees, ...) come first;
# ranking (plain Python) is shared by pruning in the engine, the report and the API.
LAYERS = (
    ("shared", ("jaxmnist.checks", "jaxmnist.trees", "jaxmnist.caches", "jaxmnist.importspec",
                "jaxmnist.envinfo", "jaxmnist.groups", "jaxmnist.ranking", "jaxmnist.search")),
    ("data", ("jaxmnist.data",)),
    ("models", ("jaxmnist.models",)),
    ("engine", ("jaxmnist.engine", "jaxmnist.schema", "jaxmnist.config")),
    ("runs", ("jaxmnist.runs",)),
    ("serve", ("jaxmnist.serve",)),
    ("api", ("jaxmnist.api", "jaxmnist.tuning", "jaxmnist.runner", "jaxmnist.sweep",
             "jaxmnist.report", "jaxmnist")),
)
# The command lines: thin layers over the API that nothing in the library imports (the web
# demo's command line lives with its app, jaxmnist.serve.app, which only __main__ imports).
CLI_MODULES = ("jaxmnist.sweep", "jaxmnist.report", "jaxmnist.data.cli")


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix that names ``module``."""
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def test_every_module_sits_in_one_layer_and_imports_only_upstream():
    graph = import_graph()
    unplaced = sorted(m for m in graph if layer_of(m) < 0)
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"
    upward = sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
                    for m, targets in graph.items() for t in targets
                    if layer_of(t) > layer_of(m))
    assert not upward, "\n".join(upward)
    assert {LAYERS[layer_of(m)][0] for m in graph} == {name for name, _ in LAYERS}


def test_the_layer_check_finds_an_upward_import():
    assert layer_of("jaxmnist.engine.fit") > layer_of("jaxmnist.data.splits")
    assert layer_of("jaxmnist.runs.rundir") > layer_of("jaxmnist.engine.hooks")
    assert layer_of("jaxmnist.serve.app") > layer_of("jaxmnist.runs.rundir")
    assert layer_of("jaxmnist.sweep") > layer_of("jaxmnist.serve.app")


def imported_names(path: Path) -> set[str]:
    """Every absolute module name an ``import`` / ``from ... import`` of ``path`` names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names


def test_the_library_does_not_import_the_benchmark_tools():
    # benchmarks/ (bench, workers, step profile, accelerator run) sits outside the wheel: a
    # library module that imported it would fail in an installed copy.
    assert (ROOT / "benchmarks" / "bench.py").is_file()
    found = {str(p.relative_to(ROOT)): sorted(n for n in imported_names(p)
                                               if n.split(".")[0] == "benchmarks")
             for p in PACKAGE.rglob("*.py")}
    assert not {k: v for k, v in found.items() if v}, found
    stale = [n for n in ("bench", "bench_workers", "step_profile", "accelerator")
             if (PACKAGE / f"{n}.py").exists()]
    assert not stale, f"benchmark tools back inside the library: {stale}"


# ------------------------------------------------------------------ folders of one machine

# Top-level folders that only ever name one machine's layout (a user's home, a workplace's work
# or tool folder, an add-on prefix), spelled in pieces so that this file does not match itself.
_MACHINE_TOPS = ("work", "root", "home", "Users", "opt")
_MACHINE_PARTS = ("tmp" + "/bash_jobs", "." + "library/")
# An absolute path starts the path: not after a word character, a dot or a colon (so neither
# "runs/home/x", "../work/x" nor "https://example.org/work/x" counts).
_START = r"(?<![\w.:~-])/"
MACHINE_PATH = re.compile(_START + "(?:" + "|".join(_MACHINE_TOPS) + ")/"
                          + "|" + "|".join(map(re.escape, _MACHINE_PARTS)))
# Recorded outputs (run directories, benchmark and figure results) name no absolute folder at
# all, /tmp included: a record holds paths relative to its run (RUNS/..., sweeps/...).
RECORD_PATH = re.compile(_START + "(?:tmp|var|srv|mnt|" + "|".join(_MACHINE_TOPS) + ")/")
RECORD_SUFFIXES = (".json", ".jsonl", ".csv")
RECORD_FOLDERS = ("tests/data/", "benchmarks/", "figures/")


def repository_files() -> list[str]:
    """Tracked files and new ones git does not ignore; the tree itself without git."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        return [line for line in out.stdout.splitlines() if (ROOT / line).is_file()]
    except (OSError, subprocess.SubprocessError):  # an unpacked archive: walk it
        skip = (".git", ".venv", "venv", "runs", "__pycache__", ".pytest_cache", "build")
        return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                if p.is_file() and not any(part.startswith(skip) for part in
                                           p.relative_to(ROOT).parts)]


def machine_paths(name: str, text: str) -> list[str]:
    """``"file:line: text"`` for every line of ``text`` that names a machine's folder."""
    record = name.endswith(RECORD_SUFFIXES) and name.startswith(RECORD_FOLDERS)
    pattern = RECORD_PATH if record else MACHINE_PATH
    return [f"{name}:{i}: {line.strip()[:120]}" for i, line in enumerate(text.splitlines(), 1)
            if pattern.search(line)]


def test_the_path_check_finds_what_it_looks_for():
    bad = ["cd /" + "work/main", "see /" + "root/.cache", "/" + "home/me/x", "/" + "opt/tool",
           "JOB=/tmp/" + "bash_jobs.0/1", "the tool in /x/." + "library/device/"]
    for line in bad:
        assert machine_paths("docs/x.md", line), line
    fine = ["https://example.org/" + "work/x", "runs/" + "home/x", "../" + "work/x",
            "--workdir /tmp/smoke", "~/" + "work/x", "/usr/share/datasets/fashion-mnist"]
    for line in fine:
        assert not machine_paths("docs/x.md", line), line
    assert machine_paths("tests/data/run/env.json", '  "/tmp/' + 'run",')
    assert not machine_paths("tests/data/run/env.json", '  "RUNS/run",')


def test_no_file_names_a_folder_of_the_development_machine():
    files = repository_files()
    assert "tests/test_imports.py" in files and "README.md" in files
    found = []
    for name in files:
        blob = (ROOT / name).read_bytes()
        if b"\0" in blob[:8192]:  # binary (npz, png): no text to read
            continue
        found += machine_paths(name, blob.decode("utf-8", errors="replace"))
    assert not found, "\n".join(found)


def test_every_module_of_the_package_is_in_the_repository():
    # A .gitignore pattern that matches a package folder (once "runs/" matched jaxmnist/runs/)
    # leaves a clone, CI and the wheel without those modules while this checkout still works.
    files = set(repository_files())
    if not (ROOT / ".git").exists():  # an unpacked archive: nothing is ignored
        return
    missing = sorted(p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts
                     and p.relative_to(ROOT).as_posix() not in files)
    assert not missing, f"ignored by git, so missing from a clone: {missing}"


def test_the_library_imports_no_command_line():
    graph = import_graph()
    importers = {cli: sorted(m for m, targets in graph.items() if cli in targets
                             and not m.endswith("__main__"))
                 for cli in CLI_MODULES}
    assert all(cli in graph for cli in CLI_MODULES)
    assert not any(importers.values()), importers
