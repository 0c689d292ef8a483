"""`jobbridge graph`: a picture of the workflow, one box per job, colored by status."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from jobbridge.graph import COLORS, NOT_RUN_COLOR


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
