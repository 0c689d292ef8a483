"""`jobbridge graph`: a picture of the workflow, one box per job, colored by status."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from jobbridge.graph import COLORS, MAX_ROW, NOT_RUN_COLOR

SVG = "{http://www.w3.org/2000/svg}"


def test_graph_draws_every_job_with_its_status_color(tmp_path: Path) -> None:
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({
        "jobs": [{"id": "a", "command": ["true"]}, {"id": "b", "command": ["false"]},
                 {"id": "c<&>", "command": ["true"]}] + [
                    {"id": f"m{i}", "command": ["true"]} for i in range(6)],
        "groups": [{"name": "left", "elements": ["m0", "m1", "m2"]},
                   {"name": "right", "elements": ["m3", "m4", "m5"]}],
        "dependencies": [["a", "b"], ["b", "c<&>"], ["left", "right"]]}))
    run = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(workflow)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    out = tmp_path / "picture.svg"
    drawn = subprocess.run([sys.executable, "-m", "jobbridge", "graph", "1", "-o", str(out)],
                           capture_output=True, text=True)
    assert drawn.returncode == 0, drawn.stderr
    root = ET.fromstring(out.read_text())  # well-formed, names escaped
    boxes = {g.find("{http://www.w3.org/2000/svg}title").text.split(":")[0]:  # type: ignore[union-attr]
             g.find("{http://www.w3.org/2000/svg}rect").get("fill")  # type: ignore[union-attr]
             for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert boxes["a"] == COLORS["done"]
    assert boxes["b"] == COLORS["failed"]
    assert boxes["c<&>"] == NOT_RUN_COLOR
    assert len(boxes) == 9  # the hidden barrier between the groups is a dot, not a box


def _svg_boxes(svg: str) -> tuple[ET.Element, dict[str, tuple[float, float, str]]]:
    """The picture's root and, per job box, its x, y and fill."""
    root = ET.fromstring(svg)
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        title, rect = g.find(f"{SVG}title"), g.find(f"{SVG}rect")
        assert title is not None and title.text and rect is not None
        boxes[title.text.split(":")[0]] = (float(rect.get("x", 0)), float(rect.get("y", 0)),
                                           rect.get("fill", ""))
    return root, boxes


def test_graph_of_a_file_before_submission_wraps_wide_levels(tmp_path: Path) -> None:
    """graph FILE.json draws a workflow file (nothing run, nothing stored), into FILE.svg
    by default; a level of 22 jobs wraps into rows of at most MAX_ROW boxes."""
    jobs = [{"id": "split", "command": ["true"]}, {"id": "merge", "command": ["true"]}] + [
        {"id": f"part{i}", "command": ["true"]} for i in range(22)]
    (tmp_path / "wide.json").write_text(json.dumps({
        "jobs": jobs, "dependencies": [["split", f"part{i}"] for i in range(22)]
        + [[f"part{i}", "merge"] for i in range(22)]}))
    drawn = subprocess.run([sys.executable, "-m", "jobbridge", "graph", "wide.json"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout == "wide.svg\n"
    root, boxes = _svg_boxes((tmp_path / "wide.svg").read_text())
    assert len(boxes) == 24
    assert {fill for _, _, fill in boxes.values()} == {COLORS["not_submitted"]}
    assert float(root.get("width", 0)) <= (MAX_ROW + 1) * 150
    part_rows = sorted({y for name, (_, y, _) in boxes.items() if name.startswith("part")})
    assert len(part_rows) == 3  # 22 = 8 + 8 + 6
    assert boxes["split"][1] < part_rows[0] and part_rows[-1] < boxes["merge"][1]
    for y in part_rows:
        assert sum(1 for name, (_, top, _) in boxes.items()
                   if name.startswith("part") and top == y) <= MAX_ROW
    listed = subprocess.run([sys.executable, "-m", "jobbridge", "list", "--json"],
                            capture_output=True, text=True)
    assert json.loads(listed.stdout) == []


def test_graph_errors_and_help(tmp_path: Path) -> None:
    """A missing or invalid file, an unknown workflow: one line, exit 2; --help gives
    the true default output name."""
    def graph(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobbridge", "graph", *args],
                              capture_output=True, text=True, cwd=tmp_path)

    (tmp_path / "bad.json").write_text('{"jobs": []}')
    for args, text in ((["nothing.json"], "nothing.json: no such file"),
                       (["bad.json"], "jobs: must be a non-empty list"),
                       (["12"], "no workflow 12")):
        result = graph(*args)
        assert result.returncode == 2 and text in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    shown = graph("--help").stdout
    assert "workflow-WF.svg" in shown and "WF.svg)" not in shown.replace("workflow-WF.svg", "")
