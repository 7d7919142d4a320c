"""Issue 25: the code shows the pipeline.  No import cycle anywhere in refava (grimp, as import-linter reads the
imports: those inside functions count too), the layers contract kept, and no function over 60 statements."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("refava", include_external_packages=False)
    cycles = sorted({tuple(sorted((a, b))) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                     if graph.find_shortest_chain(importer=b, imported=a)})
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.parametrize("tool, args", [("lint-imports", []), ("ruff", ["check", "refava"])])
def test_structure_checks_pass(tool, args):
    exe = Path(sys.executable).parent / tool
    if not exe.exists() and shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install '.[test]')")
    proc = subprocess.run([str(exe) if exe.exists() else tool, *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_command_that_writes_uses_a_declared_stage():
    """The CLI names the stage it runs; its lock (and, for the pipeline's stages, its state in `refava status`)
    come from the one declaration in refava.stages."""
    import re

    from refava.stages import BY_NAME, STAGES

    named = set()
    for path in (ROOT / "refava" / "cli").glob("*.py"):
        named |= set(re.findall(r'load_workspace\(ctx, "([^"]+)"', path.read_text()))
    assert named and named <= set(BY_NAME), named - set(BY_NAME)
    assert [s.name for s in STAGES if s.state][:3] == ["ingest", "annotate check", "build-splits"]
    for stage in STAGES:                                       # each declaration names a function that exists
        assert callable(stage.entry()), stage.name
