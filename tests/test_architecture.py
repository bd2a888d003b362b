"""The floor plan of `src/meddinov3`, measured from the source with `ast` (nothing is imported).

Rooms: the top-level packages (`backbone/`, `nnunet/`, ...) and top-level modules (`images.py`,
`io.py`, ...) of `meddinov3`; the package's own `__init__.py` is the room `meddinov3` (its front
door). An arrow A -> B: some file of room A imports something of room B - at the top of the file or
inside a function, `import meddinov3.b`, `from meddinov3.b import x`, `from meddinov3 import b`, or
a string naming a module of B (what `importlib.import_module` reads). Arrows inside one room do not
count.

Floors: the number of rooms on the longest chain of arrows. A room that imports no other room is on
floor 1; a room is one floor above the highest room it imports. A circle (A -> ... -> A) has no
floor; there must be none.

Arrows up: `FLOOR_PLAN` below declares each room's floor, the plan a reader keeps in mind. An arrow
up is an arrow from a room to one declared on the same floor or higher: the plan says it must not
exist (each arrow goes down at least one floor). Every room must be declared, so a new room is
placed deliberately.

Run this file as a script to print the measurements for any tree:
`python tests/test_architecture.py [path/to/src/meddinov3]`.
"""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "meddinov3"
MAX_FLOORS = 7
MAX_LINES = 300

FLOOR_PLAN = {
    # 1: foundations that import no other room: the error base, atomic writes, file names, devices,
    # precision
    "errors": 1, "io": 1, "filenames": 1, "intensity": 1, "precision": 1, "capture": 1, "devices": 1, "overrides": 1,
    # 2: reading what the user gives (image files, raw datasets, output folders, command errors);
    # the backbone
    "images": 2, "datasets": 2, "folders": 2, "cli_errors": 2, "backbone": 2,
    # 3: what reads a dataset or a backbone: networks, scoring, conversion, curation, synthetic CT,
    # feature maps
    "segmentation": 3, "evaluation": 3, "convert": 3, "curate": 3, "synth": 3, "viz": 3,
    # 4: the baseline networks; the linear probe
    "baselines": 4, "probe": 4,
    # 5: training: fine-tuning inside nnU-Net, pretraining
    "nnunet": 5, "pretrain": 5,
    # 6: whole pipelines: the demo, the paper's comparison; a trained model as ONNX
    "demo": 6, "compare": 6, "export": 6,
    # the package's front door (`meddinov3.load_backbone`, `meddinov3.Segmenter`)
    "meddinov3": 6,
    # 7: the command line
    "cli": 7,
}


def module_path(name: str, package: Path) -> Path | None:
    """The file of the dotted module `name` inside `package`, or None."""
    parts = name.split(".")
    if parts[0] != package.name:
        return None
    base = package.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def imported_files(path: Path, package: Path) -> set[Path]:
    """The files of `package` that the file at `path` imports: import statements anywhere in it
    (functions included; `from a import b` imports module `a.b` when there is one, else `a`) and
    string constants that name one of its modules exactly (what importlib reads)."""
    names: set[tuple[str, bool]] = set()  # (dotted name, a prefix of it may be the module)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update((alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update((f"{node.module}.{alias.name}", True) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(f"{package.name}."):
            names.add((node.value, False))
    found = set()
    for name, prefix_allowed in names:
        parts = name.split(".")
        candidates = [".".join(parts[:n]) for n in range(len(parts), 0, -1)] if prefix_allowed else [name]
        target = next((p for p in map(lambda c: module_path(c, package), candidates) if p is not None), None)
        if target is not None and target != path:
            found.add(target)
    return found


def room_of(path: Path, package: Path) -> str:
    """The room of a file: its top-level package or module; `meddinov3` for the package's own
    `__init__.py`."""
    relative = path.relative_to(package)
    if relative == Path("__init__.py"):
        return package.name
    return relative.parts[0].removesuffix(".py")


def file_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """file -> the files it imports, as paths relative to `package`."""
    return {str(path.relative_to(package)): {str(t.relative_to(package)) for t in imported_files(path, package)}
            for path in sorted(package.rglob("*.py"))}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """room -> the rooms it imports (arrows), for every room of `package`."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        room = room_of(path, package)
        targets = graph.setdefault(room, set())
        targets.update(room_of(target, package) for target in imported_files(path, package))
        targets.discard(room)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one room (Tarjan): each holds a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(room: str) -> None:
        index[room] = low[room] = len(index)
        stack.append(room)
        for target in sorted(graph.get(room, ())):
            if target not in index:
                visit(target)
                low[room] = min(low[room], low[target])
            elif target in stack:
                low[room] = min(low[room], index[target])
        if low[room] == index[room]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == room:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for room in sorted(graph):
        if room not in index:
            visit(room)
    return found


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each room's floor (1 + the highest floor it imports); needs a graph without circles."""

    @lru_cache(maxsize=None)
    def floor(room: str) -> int:
        return 1 + max((floor(target) for target in graph.get(room, ())), default=0)

    return {room: floor(room) for room in graph}


def collapse(graph: dict[str, set[str]], groups: list[list[str]]) -> dict[str, set[str]]:
    """`graph` with each group of rooms (a circle) drawn as one room named `a+b+...`."""
    name = {room: "+".join(group) for group in groups for room in group}
    merged: dict[str, set[str]] = {}
    for room, targets in graph.items():
        merged.setdefault(name.get(room, room), set()).update(name.get(target, target) for target in targets)
    return {room: targets - {room} for room, targets in merged.items()}


def arrows_up(graph: dict[str, set[str]], plan: dict[str, int] = FLOOR_PLAN) -> list[tuple[str, str]]:
    """The arrows that do not go down the declared plan (to a room on the same floor or above)."""
    return sorted((room, target) for room, targets in graph.items() for target in targets
                  if plan.get(target, 0) >= plan.get(room, 0))


def line_counts(package: Path = PACKAGE) -> dict[str, int]:
    return {str(path.relative_to(package)): len(path.read_text(encoding="utf-8").splitlines())
            for path in package.rglob("*.py")}


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_no_import_circles_between_files():
    """Inside a room too: two files that import each other cannot be read one after the other."""
    assert circles(file_graph()) == []


def test_at_most_seven_floors():
    graph = import_graph()
    assert not circles(graph)
    levels = floors(graph)
    assert max(levels.values()) <= MAX_FLOORS, sorted(levels.items(), key=lambda item: -item[1])


def test_every_room_is_on_the_plan():
    assert sorted(set(import_graph()) - set(FLOOR_PLAN)) == []


def test_no_arrows_up():
    assert arrows_up(import_graph()) == []


def test_no_file_over_300_lines():
    assert {name: n for name, n in line_counts().items() if n > MAX_LINES} == {}


def test_graph_sees_imports_inside_functions_and_strings(tmp_path):
    """The measure itself: an import in a function body and an importlib string are arrows, an
    import of a name that is not a room is not."""
    package = tmp_path / "meddinov3"
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("")
    (package / "mid.py").write_text("def f():\n    from meddinov3.low import x\n")
    (package / "high.py").write_text("import importlib\nM = 'meddinov3.mid'\nimport meddinov3.nothing\n")
    (package / "back.py").write_text("from meddinov3 import high\n")
    (package / "low" / "up.py").write_text("import meddinov3.back\n")
    graph = import_graph(package)
    assert graph["mid"] == {"low"} and graph["high"] == {"mid"} and graph["back"] == {"high"}
    assert circles(graph) == [["back", "high", "low", "mid"]]
    (package / "low" / "up.py").unlink()
    assert floors(import_graph(package))["back"] == 4


def main(package: Path) -> None:
    graph = import_graph(package)
    print(f"rooms {len(graph)}, arrows {sum(len(targets) for targets in graph.values())}")
    found = circles(graph)
    print(f"circles {len(found)}: {found}")
    levels = floors(collapse(graph, found))
    print(f"floors {max(levels.values())} (each circle counted as one room): "
          + ", ".join(f"{room} {level}" for room, level in sorted(levels.items(), key=lambda item: -item[1])))
    print(f"circles between files: {circles(file_graph(package))}")
    up = arrows_up(graph)
    print(f"arrows up {len(up)}: " + ", ".join(f"{a}->{b}" for a, b in up))
    largest = sorted(line_counts(package).items(), key=lambda item: -item[1])[:5]
    print("largest files: " + ", ".join(f"{name} {n}" for name, n in largest))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PACKAGE)
