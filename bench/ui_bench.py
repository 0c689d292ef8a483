"""The dashboard on a stored 100,000-job workflow, in the system's headless Chromium.

Issue [6/10] (jobbridge ui) item 7. Prints figures only; asserts nothing timed.

A workflow of 10 fan-out/fan-in layers (join -> 9,999 jobs -> join ...) is stored,
its jobs given the statuses of a run in progress (60 % done with their usage, 2 %
failed, 3 % running, the rest waiting), then `jobbridge ui` starts on that home.
Timed, from the navigation to the page drawn (each figure the median of --repeat
visits, the first visit after the server started shown apart):

- workflow page: the graph's nodes and the header drawn (its usage figures, summed
  over every job, come a moment later: timed too), first by a link
  straight to it as the server starts (its graph not built yet: 3 servers), then
  after the workflows page (the server prepares running workflows' graphs);
- jobs table: the first 100 rows drawn; then filtering on a state, sorting on the
  end date, going to the last page (a click to the table redrawn);
- report tab: `jobbridge report`'s summary, histograms, timeline and the first 100
  rows of its table drawn (the report is built when first asked, then cached
  until jobs change);
- the server's memory (resident now, and its peak).

Targets: < 2 s each for the workflow page, the jobs table and the report tab.

    .venv/bin/python bench/ui_bench.py [--jobs 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DIR, byte_compile, load_average, med, spread, table

CHROMIUM = os.environ.get("JOBBRIDGE_CHROMIUM", "/usr/bin/chromium")
#: The header's CPU time tile no longer waiting (it shows "…" until its figures come).
FIGURES_SHOWN = "[data-figure='CPU time'] .value:not(:text-is('…'))"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def store_workflow(home: Path, jobs: int, layers: int = 10) -> int:
    """Store the layered workflow and give its jobs a run's statuses; its id."""
    os.environ["JOBBRIDGE_HOME"] = str(home)
    from jobbridge import constants
    from jobbridge.configuration import Configuration
    from jobbridge.model import parse_workflow
    from jobbridge.store import Store

    per = jobs // layers
    items: list[dict[str, Any]] = []
    groups, deps = [], []
    for layer in range(layers):
        items.append({"id": f"join_{layer}", "command": ["true"]})
        members = [f"sim_{layer}_{i}" for i in range(per - 1)]
        items += [{"id": m, "command": ["true"]} for m in members]
        groups.append({"name": f"g{layer}", "elements": members})
        deps.append([f"join_{layer}", f"g{layer}"])
        if layer + 1 < layers:
            deps.append([f"g{layer}", f"join_{layer + 1}"])
    store = Store(home)
    workflow_id = store.add_workflow(
        parse_workflow({"name": "bench", "jobs": items, "groups": groups, "dependencies": deps}),
        Configuration.from_dict("localhost", {}))
    rng = random.Random(7)
    changes = []
    for idx in range(len(items)):
        draw = rng.random()
        minute = f"2026-01-01T10:{idx % 60:02d}:{idx % 53:02d}.000+00:00"
        end = f"2026-01-01T11:{idx % 60:02d}:{idx % 47:02d}.000+00:00"
        if draw < 0.60:
            changes.append((idx, {
                "status": constants.DONE, "exit_status": constants.FINISHED_REGULARLY,
                "exit_value": 0, "submission_date": minute, "execution_date": minute,
                "ending_date": end, "scheduler_job_id": str(idx), "attempt": 1,
                "resource_usage": f"cput=00:{idx % 60:02d}:10 mem={1000 + idx % 5000}kb "
                                  f"walltime=00:59:{idx % 60:02d} cpupercent=90 ncpus=1"}))
        elif draw < 0.62:
            changes.append((idx, {
                "status": constants.FAILED, "exit_status": constants.FINISHED_REGULARLY,
                "exit_value": 1 + idx % 3, "submission_date": minute, "execution_date": minute,
                "ending_date": end, "exit_reason": "OUT_OF_MEMORY" if idx % 2 else None}))
        elif draw < 0.65:
            changes.append((idx, {"status": constants.RUNNING, "submission_date": minute,
                                  "execution_date": minute, "scheduler_job_id": str(idx)}))
    store.update_jobs(workflow_id, changes)
    store.set_workflow_status(workflow_id, constants.WORKFLOW_IN_PROGRESS)
    store.close()
    return workflow_id


def memory_kb(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of a process, in kB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"ui_bench: {CHROMIUM} is missing (bash scripts/browser-up.sh)")
    from playwright.sync_api import sync_playwright

    byte_compile()
    DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DEFAULT_DIR, prefix="ui-") as folder:
        home = Path(folder) / "home"
        started = time.perf_counter()
        workflow_id = store_workflow(home, args.jobs)
        print(f"stored a {args.jobs:,}-job workflow in {time.perf_counter() - started:.1f} s; "
              f"load average {load_average()}")
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(Path(folder) / "profile"), executable_path=CHROMIUM, headless=True,
                args=FLAGS, viewport={"width": 1400, "height": 900})
            context.set_default_timeout(120_000)
            page = context.new_page()
            cold = [cold_visit(page, home, workflow_id) for _ in range(3)]
            server, url = start_server(home)
            try:
                base = url.split("/?")[0]
                results = measure(page, url, f"{base}/workflows/{workflow_id}",
                                  expected_rows(home, workflow_id), args.repeat)
                rss, peak = memory_kb(server.pid)
            finally:
                server.terminate()
                server.wait(timeout=30)
            context.close()
    results.insert(1, ("workflow page, server just started", cold[0], cold[1:], "< 2 s"))
    rows = [[name, f"{first:.2f} s", f"{med(rest):.2f} s", spread(rest), target]
            for name, first, rest, target in results]
    print(table(["measure", "first visit", "median after", "samples", "target"], rows))
    print(f"server memory: {rss / 1024:.0f} MB resident, peak {peak / 1024:.0f} MB")


def start_server(home: Path) -> tuple[subprocess.Popen[str], str]:
    """`jobbridge ui` on ``home``, and the URL it printed."""
    server = subprocess.Popen([sys.executable, "-m", "jobbridge", "ui"], text=True,
                              stdout=subprocess.PIPE, env={**os.environ,
                                                           "JOBBRIDGE_HOME": str(home)})
    assert server.stdout is not None
    url = ""
    while not url.startswith("http"):
        url = server.stdout.readline().strip()
    return server, url


def cold_visit(page: Any, home: Path, workflow_id: int) -> float:
    """A new server, and at once a link straight to the workflow's page: its graph
    not prepared yet (the worst case of a first render)."""
    server, url = start_server(home)
    try:
        base, token = url.split("/?")
        began = time.perf_counter()
        page.goto(f"{base}/workflows/{workflow_id}?{token}")
        page.wait_for_selector("g.node.group", state="attached")
        page.wait_for_selector("#wf-header .figures", state="attached")
        return time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=30)


def expected_rows(home: Path, workflow_id: int) -> dict[str, str]:
    """The first row the table must show after each click (read from the store)."""
    from jobbridge.store import Store
    from jobbridge.ui import views

    store = Store(home)
    try:
        total = views.jobs_page(store, workflow_id, limit=1)["total"]
        return {"filter": views.jobs_page(store, workflow_id, state="failed", limit=1),
                "sort": views.jobs_page(store, workflow_id, state="failed", sort="end", limit=1),
                "last": views.jobs_page(store, workflow_id, offset=(total - 1) // 100 * 100,
                                        limit=1)}
    finally:
        store.close()


def measure(page: Any, url: str, workflow: str, expected: dict[str, Any], repeat: int
            ) -> list[tuple[str, float, list[float], str]]:
    def timed(action: Any, *selectors: str) -> float:
        began = time.perf_counter()
        action()
        for selector in selectors:
            page.wait_for_selector(selector, state="attached")
        return time.perf_counter() - began

    def clicked(selector: str, key: str) -> float:
        """A click, until the table's first row is the one expected."""
        began = time.perf_counter()
        page.click(selector)
        page.wait_for_function("(id) => document.querySelector('tr.job')?.dataset.job === id",
                               arg=expected[key]["rows"][0]["id"])
        return time.perf_counter() - began

    login = timed(lambda: page.goto(url), "tr.wf")
    samples: dict[str, list[float]] = {key: [] for key in
                                       ("graph", "figures", "table", "filter", "sort", "last",
                                        "report")}
    for _ in range(repeat + 1):
        samples["graph"].append(timed(lambda: page.goto(workflow), "g.node.group",
                                      "#wf-header .figures"))
        samples["figures"].append(samples["graph"][-1] + timed(lambda: None, FIGURES_SHOWN))
        samples["table"].append(timed(lambda: page.goto(workflow + "/jobs"),
                                      "tr.job:nth-child(100)"))
        samples["filter"].append(clicked("#state-filter button[data-state='failed']", "filter"))
        samples["sort"].append(clicked("th[data-sort='end']", "sort"))
        timed(lambda: page.goto(workflow + "/jobs"), "tr.job")
        samples["last"].append(clicked("button:has-text('»')", "last"))
        samples["report"].append(timed(lambda: page.goto(workflow + "/report"),
                                       "#report-figures svg", "#report-timeline svg",
                                       "tr.attempt:nth-child(100)"))
    names = {"graph": ("workflow page (graph + header)", "< 2 s"),
             "figures": ("  its usage figures filled in", "-"),
             "table": ("jobs table (100 rows)", "< 2 s"),
             "filter": ("  filter on failed (a click)", "-"),
             "sort": ("  then sort by end (a click)", "-"),
             "last": ("  last page (a click)", "-"),
             "report": ("report tab (figures + 100 rows)", "< 2 s")}
    return [("workflows page (login)", login, [login], "-")] + [
        (name, samples[key][0], samples[key][1:], target) for key, (name, target) in names.items()]


if __name__ == "__main__":
    main()
