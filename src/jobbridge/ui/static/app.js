// jobbridge ui: the dashboard's pages, drawn from the JSON API (docs/ui.md), kept live by
// the server's event stream. Plain browser JavaScript: no framework, no build step, no
// network beyond this server. Text from the store is only ever set as text (never HTML).
(function () {
  "use strict";

  const CLASSES = ["failed", "running", "queued", "waiting", "done", "not_run"];
  const LABEL = { failed: "failed", running: "running", queued: "queued", waiting: "waiting",
                  done: "done", not_run: "not run" };
  const CSRF = document.querySelector('meta[name="jb-csrf"]').content;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const main = document.getElementById("main");

  // --- small helpers ------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : value);
    }
  }
  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  // Bring `old` to look like `fresh`, touching only what differs: a refresh every second
  // must not replace the button or row under the user's pointer (a click whose press
  // and release land on two different elements is lost). Event listeners of kept
  // elements stay: use it where they depend on nothing that changes.
  function morph(old, fresh) {
    if (old.nodeName !== fresh.nodeName || old.nodeType !== Node.ELEMENT_NODE) {
      if (old.nodeType === Node.TEXT_NODE && fresh.nodeType === Node.TEXT_NODE) {
        if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
      } else {
        old.replaceWith(fresh);
      }
      return;
    }
    if (old.isEqualNode(fresh)) return;
    for (const { name } of [...old.attributes]) if (!fresh.hasAttribute(name)) old.removeAttribute(name);
    for (const { name, value } of [...fresh.attributes]) {
      if (old.getAttribute(name) !== value) old.setAttribute(name, value);
    }
    const before = [...old.childNodes], after = [...fresh.childNodes];
    if (before.length !== after.length) { old.replaceChildren(...after); return; }
    before.forEach((child, i) => morph(child, after[i]));
  }
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "–";
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    const whole = Math.round(seconds);
    if (whole < 60) return `${whole} s`;
    const m = Math.floor(whole / 60), sec = whole % 60;
    if (m < 60) return `${m} m ${String(sec).padStart(2, "0")} s`;
    const hours = Math.floor(m / 60), min = m % 60;
    if (hours < 48) return `${hours} h ${String(min).padStart(2, "0")} m`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }
  function date(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
           `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function memory(kb) {
    if (kb === null || kb === undefined) return "–";
    if (kb < 1024) return `${Math.round(kb)} kB`;
    if (kb < 1024 * 1024) return `${(kb / 1024).toFixed(1)} MB`;
    return `${(kb / 1024 / 1024).toFixed(2)} GB`;
  }
  function bytes(n) { return n < 1024 ? `${n} B` : memory(n / 1024); }
  const shortStatus = (status) => String(status).replace(/^workflow_/, "").replace(/_/g, " ");
  function exitText(job) {
    switch (job.exit_status) {
      case null: case undefined: return "";
      case "finished_regularly": return `exit ${job.exit_value}`;
      case "finished_signal": return `signal ${job.term_sig}`;
      case "killed_by_user": return "killed";
      case "aborted_before_running": return "not run";
      case "aborted": return "aborted";
      default: return job.exit_status.replace(/_/g, " ");
    }
  }
  function stateBadge(cls, text) {
    return h("span", { class: `badge st-${cls}`, "data-state": cls, text: text || LABEL[cls] });
  }
  function workflowBadge(wf) {
    const failed = wf.counts.failed;
    let cls = "wf-other", text = shortStatus(wf.status);
    if (wf.status === "workflow_in_progress") cls = "wf-running";
    else if (wf.status === "workflow_done") cls = failed ? "wf-failed" : "wf-done";
    if (wf.status === "workflow_done" && failed) text = `done · ${failed} failed`;
    if (wf.request) text += ` · ${wf.request.split(" ")[0]} requested`;
    return h("span", { class: `badge ${cls}`, "data-status": wf.status, text });
  }
  function stackedBar(counts, total) {
    const bar = h("div", { class: "bar", title: CLASSES.filter((c) => counts[c])
      .map((c) => `${num(counts[c])} ${LABEL[c]}`).join(", ") });
    for (const cls of CLASSES) {
      if (!counts[cls] || !total) continue;
      const seg = h("span", { class: `st-${cls}` });
      seg.style.width = `${(100 * counts[cls]) / total}%`;
      bar.append(seg);
    }
    return bar;
  }

  // --- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new ApiError(response.status, await errorText(response));
    return response.json();
  }
  async function post(path) {
    const response = await fetch(path, { method: "POST", headers: { "X-CSRF-Token": CSRF } });
    if (!response.ok) throw new ApiError(response.status, await errorText(response));
    return response.json();
  }
  async function errorText(response) {
    const text = await response.text();
    try { return JSON.parse(text).error || text; } catch (e) { return text || response.statusText; }
  }
  // ids are numbers here, RESOURCE:NUMBER for a remote resource's workflows
  const wfPath = (id) => `/api/workflows/${encodeURIComponent(id)}`;
  const wfHref = (id) => `/workflows/${encodeURIComponent(id)}`;
  const jobHref = (wf, job) => `${wfHref(wf)}/job?id=${encodeURIComponent(job)}`;

  function toast(text, isError) {
    const el = document.getElementById("toast");
    el.textContent = text;
    el.className = isError ? "error" : "";
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { el.hidden = true; }, isError ? 6000 : 3000);
  }

  function confirmAction(title, text, okLabel) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-title").textContent = title;
    document.getElementById("confirm-text").textContent = text;
    const ok = document.getElementById("confirm-ok");
    ok.textContent = okLabel;
    return new Promise((resolve) => {
      const done = (answer) => () => { dialog.close(); cleanup(); resolve(answer); };
      const yes = done(true), no = done(false);
      const cancelled = () => { cleanup(); resolve(false); };
      function cleanup() {
        ok.removeEventListener("click", yes);
        document.getElementById("confirm-cancel").removeEventListener("click", no);
        dialog.removeEventListener("cancel", cancelled);
      }
      ok.addEventListener("click", yes);
      document.getElementById("confirm-cancel").addEventListener("click", no);
      dialog.addEventListener("cancel", cancelled);
      dialog.showModal();
    });
  }

  async function act(path, title, text, okLabel, after) {
    if (!(await confirmAction(title, text, okLabel))) return;
    try {
      const answer = await post(path);
      toast(answer.message);
      if (after) after();
      app.refreshSoon();
    } catch (error) {
      toast(error.message, true);
    }
  }

  function crumbs(...items) {
    const nav = document.getElementById("crumbs");
    nav.replaceChildren();
    items.forEach((item, i) => {
      if (i) nav.append(h("span", { class: "sep", text: "›" }));
      nav.append(item.href ? h("a", { href: item.href, "data-nav": true, text: item.text })
                           : h("span", { text: item.text }));
    });
  }

  function showError(error) {
    const message = error.status === 404 ? `Not found: ${error.message}` : String(error.message);
    main.replaceChildren(h("div", { class: "error-box", text: message }),
                         h("p", {}, h("a", { href: "/", "data-nav": true, text: "All workflows" })));
  }

  // --- page: workflows ----------------------------------------------------------------------
  // This machine's workflows, then each remote resource's (ids RESOURCE:NUMBER), as the
  // server last heard from its host: never waited for, an unreachable host said so.
  function workflowsPage() {
    crumbs({ text: "workflows" });
    document.title = "jobbridge · workflows";
    const content = h("div");
    main.replaceChildren(content);
    const show = (...children) => morph(content, h("div", {}, children));
    return {
      async refresh() {
        const data = await api("/api/workflows");
        const list = data.workflows;
        const all = list.concat(...data.remotes.map((r) => r.workflows));
        const running = all.filter((w) => w.status === "workflow_in_progress").length;
        const failing = all.filter((w) => w.counts.failed > 0).length;
        const figures = h("div", { class: "figures" },
          figure("workflows", num(all.length)),
          figure("running", num(running)),
          figure("with failed jobs", num(failing), failing > 0),
          figure("jobs running", num(all.reduce((n, w) => n + w.counts.running, 0))));
        const remotes = data.remotes.length > 0;
        const local = list.length ? workflowTable(list, "workflows")
          : remotes ? h("p", { class: "muted", text: "No workflow on this machine yet." })
          : h("div", { class: "card empty-state" },
              h("p", { text: "No workflow in this jobbridge home yet." }),
              h("p", {}, "Submit one with ", h("code", { text: "jobbridge submit FILE" }), "."));
        show(h("h1", { text: "Workflows" }), figures,
          remotes ? h("h2", { class: "local-head", text: "This machine" }) : "", local,
          data.remotes.map((remote) => remoteSection(remote)));
      },
    };
  }

  function workflowTable(list, id) {
    const rows = list.map((wf) => {
      const href = wfHref(wf.id);
      return h("tr", { class: `wf link${wf.counts.failed ? " has-failed" : ""}`,
                       "data-id": wf.id, "data-href": href },
        h("td", { class: "num" }, h("a", { href, "data-nav": true, text: wf.id })),
        h("td", {}, h("a", { href, "data-nav": true, text: wf.name || "(no name)" })),
        h("td", {}, workflowBadge(wf)),
        h("td", {}, stackedBar(wf.counts, wf.jobs)),
        h("td", { class: "num", text: num(wf.jobs) }),
        h("td", { class: "num", text: num(wf.counts.done) }),
        h("td", { class: `num${wf.counts.failed ? " failed-count" : ""}`,
                  text: num(wf.counts.failed) }),
        h("td", { class: "num", text: num(wf.counts.running) }),
        h("td", { text: date(wf.submission_date) }),
        h("td", { class: "num", text: duration(wf.elapsed_s) }),
        h("td", { class: "muted", text: wf.resource }));
    });
    return h("div", { class: "table-wrap" }, h("table", { id: id || null, class: "workflows" },
      h("thead", {}, h("tr", {}, ["ID", "Name", "Status", "Progress", "Jobs", "Done",
        "Failed", "Running", "Submitted", "Elapsed", "Resource"].map((t, i) =>
        h("th", { class: [0, 4, 5, 6, 7, 9].includes(i) ? "num" : "", text: t })))),
      h("tbody", {}, rows)));
  }

  const HOST_STATE = { connecting: "connecting…", ok: "reachable", unreachable: "unreachable",
                       error: "cannot be used" };
  function remoteSection(remote) {
    let body;
    if (remote.state === "connecting") body = h("p", { class: "muted", text: "Connecting…" });
    else if (remote.state !== "ok") {
      body = h("div", { class: "error-box host-error", text: remote.error +
        (remote.state === "unreachable" ? ` (last tried ${date(remote.checked * 1000)}; ` +
          "tried again every 15 s)" : "") });
    } else if (!remote.workflows.length) {
      body = h("p", { class: "muted", text: "No workflow there yet." });
    } else body = workflowTable(remote.workflows);
    return h("section", { class: "remote", "data-remote": remote.name },
      h("div", { class: "row" }, h("h2", { text: `${remote.name}` }),
        h("span", { class: "muted mono", text: remote.destination }),
        remote.also.length ? h("span", { class: "muted", text: `(also ${remote.also.join(", ")})` }) : "",
        h("span", { class: `badge host-${remote.state}`, "data-host-state": remote.state,
                    text: HOST_STATE[remote.state] || remote.state })),
      body);
  }

  function figure(label, value, alert) {
    return h("div", { class: `figure${alert ? " alert" : ""}`, "data-figure": label },
      h("div", { class: "value", text: value }), h("div", { class: "label", text: label }));
  }

  // --- page: a workflow ---------------------------------------------------------------------
  function workflowPage(id, tab, query) {
    const header = h("div", { id: "wf-header" });
    const body = h("div", { id: "wf-body" });
    const tabs = h("div", { class: "tabs" }, [["graph", "Graph"], ["jobs", "Jobs"],
      ["timeline", "Timeline"], ["report", "Report"]].map(([key, text]) => h("a", {
      href: `${wfHref(id)}${key === "graph" ? "" : "/" + key}`, "data-nav": true,
      class: key === tab ? "active" : "", "data-tab": key, text }))); 
    main.replaceChildren(header, tabs, body);
    const view = tab === "jobs" ? jobsView(id, body, query)
      : tab === "timeline" ? timelineView(id, body)
      : tab === "report" ? reportView(id, body) : graphView(id, body);
    let wf = null, figures = null;
    return {
      async refresh() {  // the header, its figures and the tab each drawn as their data comes
        await Promise.all([
          api(wfPath(id)).then((data) => { wf = data; drawHeader(header, wf, figures); }),
          api(`${wfPath(id)}/figures`).then((data) => {
            figures = data;
            if (wf) drawHeader(header, wf, figures);
          }),
          view.refresh()]);
      },
      leave() { if (view.leave) view.leave(); },
    };
  }

  function drawHeader(header, wf, f) {
    const title = `Workflow ${wf.id}${wf.name ? " · " + wf.name : ""}`;
    document.title = `jobbridge · ${title}`;
    crumbs({ text: "workflows", href: "/" }, { text: title });
    const ended = wf.ended;
    const c = wf.counts;
    const figureText = (value, format) => (!f ? "…" : value === null ? "–" : format(value));
    const actions = h("div", { class: "row" },
      h("button", { "data-action": "stop", disabled: ended, onclick: () => act(
        `${wfPath(wf.id)}/stop`, `Stop workflow ${wf.id}?`,
        "Its running and queued jobs are killed, the jobs not started yet will not run. " +
        "A restart runs the failed and unrun jobs again.", "Stop workflow") }, "Stop"),
      h("button", { "data-action": "restart", disabled: !ended || !(c.failed + c.not_run),
        onclick: () => act(`${wfPath(wf.id)}/restart`, `Restart workflow ${wf.id}?`,
          "Its failed and unrun jobs run again; the jobs that succeeded are kept.",
          "Restart") }, "Restart"),
      h("button", { "data-action": "delete", class: "danger", onclick: () => act(
        `${wfPath(wf.id)}/delete`, `Delete workflow ${wf.id}?`,
        "Its running jobs are killed, then the workflow, its jobs' records and its log " +
        "files under the jobbridge home are deleted. This cannot be undone.", "Delete",
        () => app.go("/")) }, "Delete"));
    morph(header, h("div", { id: "wf-header" },
      h("div", { class: "row" }, h("h1", {}, title, workflowBadge(wf)), h("div", { class: "spacer" }),
        actions),
      h("div", { class: "muted" }, `on ${wf.resource} (${wf.scheduler_type}) · submitted `,
        date(wf.submission_date), wf.ending_date ? ` · ended ${date(wf.ending_date)}` : "",
        wf.status === "workflow_in_progress" && !wf.engine_alive ? " · no engine drives it now" : ""),
      h("div", { class: "figures" },
        figure("jobs", num(wf.jobs)),
        ...CLASSES.filter((cls) => cls !== "not_run" || c.not_run).map((cls) =>
          figure(LABEL[cls], num(c[cls]), cls === "failed" && c.failed > 0)),
        figure("CPU time", figureText(f && f.cpu_s, duration)),
        figure("peak memory", figureText(f && f.peak_mem_kb, memory)),
        figure("wall time", figureText(f && f.wall_s, duration)),
        figure("CPU efficiency", figureText(f && f.efficiency, (e) => `${Math.round(100 * e)} %`)))));
  }

  // --- the graph ----------------------------------------------------------------------------
  function graphView(id, body) {
    const svg = s("svg", { class: "graph", "aria-label": "workflow graph" });
    const viewport = s("g", { class: "viewport" });
    svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
      s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))), viewport);
    const panel = h("div", { class: "panel", hidden: true });
    const legend = h("div", { class: "graph-legend" }, CLASSES.map((c) =>
      h("span", {}, h("span", { class: `dot st-${c}` }), LABEL[c])));
    const tools = h("div", { class: "graph-tools" },
      h("button", { class: "small", title: "zoom in", onclick: () => zoom(1.25) }, "+"),
      h("button", { class: "small", title: "zoom out", onclick: () => zoom(0.8) }, "−"),
      h("button", { class: "small", title: "all of the graph in view", onclick: () => fit() }, "fit"));
    body.replaceChildren(h("div", { class: "graph-wrap" }, svg, tools, legend, panel));
    let graph = null, nodes = [], view = { k: 1, x: 0, y: 0 };

    function apply() { viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`); }
    // fit(): all of the graph in view; fit(true): readable first (labels no smaller
    // than half size), the rest a pan away
    function fit(readable) {
      if (!graph) return;
      const box = svg.getBoundingClientRect();
      let k = Math.min(box.width / graph.width, box.height / graph.height, 1.4);
      if (readable) k = Math.max(k, Math.min(0.9, box.width / graph.width));
      view = { k, x: Math.max(0, (box.width - graph.width * k) / 2),
               y: Math.max(0, (box.height - graph.height * k) / 2) };
      apply();
    }
    function zoom(factor, cx, cy) {
      const box = svg.getBoundingClientRect();
      cx = cx === undefined ? box.width / 2 : cx;
      cy = cy === undefined ? box.height / 2 : cy;
      const k = Math.min(8, Math.max(0.02, view.k * factor));
      view.x = cx - ((cx - view.x) * k) / view.k;
      view.y = cy - ((cy - view.y) * k) / view.k;
      view.k = k;
      apply();
    }
    svg.addEventListener("wheel", (event) => {
      event.preventDefault();
      const box = svg.getBoundingClientRect();
      zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, event.clientX - box.left, event.clientY - box.top);
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false };
    });
    svg.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) { svg.setPointerCapture(event.pointerId); svg.classList.add("dragging"); }
      drag.moved = true;
      view.x = drag.vx + dx; view.y = drag.vy + dy;
      apply();
    });
    const endDrag = () => { svg.classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); };
    svg.addEventListener("pointerup", endDrag);
    svg.addEventListener("pointercancel", endDrag);

    function clicked(node) {
      if (drag && drag.moved) return;
      if (node.kind === "job") app.go(jobHref(id, node.job));
      else if (node.kind === "group") showGroup(node);
    }

    function draw() {
      viewport.replaceChildren();
      const edges = s("g", { class: "edges" });
      for (const edge of graph.edges) {
        const a = graph.nodes[edge.from], b = graph.nodes[edge.to];
        const y1 = a.y + a.h / 2, y2 = b.y - b.h / 2, mid = (y1 + y2) / 2;
        const path = s("path", { class: "edge", "marker-end": "url(#arrow)",
          d: `M${a.x},${y1} C${a.x},${mid} ${b.x},${mid} ${b.x},${y2}` });
        if (edge.count > 1) path.style.strokeWidth = `${Math.min(3.5, 1.3 + Math.log10(edge.count) / 2)}`;
        edges.append(path);
      }
      viewport.append(edges);
      nodes = graph.nodes.map((node) => {
        const g = s("g", { class: `node ${node.kind}`, "data-node": node.id,
                           "data-job": node.job || null, "data-kind": node.kind });
        const x = node.x - node.w / 2, y = node.y - node.h / 2;
        const title = s("title");
        if (node.kind === "barrier") {
          g.append(s("circle", { cx: node.x, cy: node.y, r: 5 }), title);
        } else if (node.kind === "job") {
          g.append(s("rect", { class: "box", x, y, width: node.w, height: node.h, rx: 7 }),
            s("text", { x: node.x, y: node.y - 2, "text-anchor": "middle", text: clip(node.label, 17) }),
            s("text", { class: "sub", x: node.x, y: node.y + 13, "text-anchor": "middle" }), title);
        } else {
          g.append(s("rect", { class: "box", x, y, width: node.w, height: node.h, rx: 7 }),
            s("text", { x: node.x, y: node.y - 8, "text-anchor": "middle",
                        text: `${clip(node.label, 20)} ×${num(node.count)}` }),
            s("text", { class: "sub", x: node.x, y: node.y + 7, "text-anchor": "middle" }),
            s("g", { class: "segments" }), title);
        }
        g.addEventListener("click", () => clicked(node));
        viewport.append(g);
        return g;
      });
    }

    function paint(counts) {
      graph.counts = counts;
      graph.nodes.forEach((node, i) => {
        const g = nodes[i], c = counts[i];
        const byClass = Object.fromEntries(CLASSES.map((cls, j) => [cls, c[j]]));
        const total = c.reduce((a, b) => a + b, 0);
        const state = worst(byClass);
        g.setAttribute("class", `node ${node.kind} st-${state}`);
        g.setAttribute("data-state", state);
        const title = g.querySelector("title");
        if (node.kind === "job") {
          g.querySelector("text.sub").textContent = LABEL[state];
          title.textContent = `${node.job}: ${LABEL[state]} (click for its page)`;
        } else if (node.kind === "group") {
          g.querySelector("text.sub").textContent = groupSummary(byClass, total);
          const bar = g.querySelector(".segments");
          bar.replaceChildren();
          let x = node.x - node.w / 2 + 8;
          const width = node.w - 16;
          for (const cls of CLASSES) {
            if (!byClass[cls]) continue;
            const w = (width * byClass[cls]) / total;
            bar.append(s("rect", { class: `seg-${cls}`, x, y: node.y + 12, width: Math.max(w, 1.5), height: 7 }));
            x += w;
          }
          title.textContent = `${node.label}: ${num(node.count)} jobs (${node.first} … ${node.last})\n` +
            CLASSES.filter((cls) => byClass[cls]).map((cls) => `${num(byClass[cls])} ${LABEL[cls]}`).join(", ");
        } else {
          title.textContent = "a dependency between groups";
        }
      });
      if (!panel.hidden && panel.node !== undefined) showGroup(graph.nodes[panel.node]);
    }

    function showGroup(node) {
      const c = graph.counts[node.id];
      const byClass = Object.fromEntries(CLASSES.map((cls, j) => [cls, c[j]]));
      panel.node = node.id;
      const list = `${wfHref(id)}/jobs?group=${node.id}`;
      panel.replaceChildren(
        h("div", { class: "row" }, h("h2", { text: node.label }), h("div", { class: "spacer" }),
          h("button", { class: "small", onclick: () => { panel.hidden = true; } }, "×")),
        h("div", { class: "muted", text: `${num(node.count)} jobs: ${node.first} … ${node.last}` }),
        h("ul", {}, CLASSES.filter((cls) => byClass[cls]).map((cls) => h("li", {},
          h("a", { href: `${list}&state=${cls}`, "data-nav": true },
            h("span", { class: `dot st-${cls}` }), `${num(byClass[cls])} ${LABEL[cls]}`)))),
        h("a", { href: list, "data-nav": true, text: "All jobs of this group in the table →" }));
      panel.hidden = false;
    }

    return {
      async refresh() {
        if (!graph) {
          graph = await api(`${wfPath(id)}/graph`);
          draw();
          paint(graph.counts);
          fit(true);
        } else {
          paint((await api(`${wfPath(id)}/graph/counts`)).counts);
        }
      },
    };
  }

  function worst(byClass) {
    for (const cls of ["failed", "running", "queued", "waiting", "not_run", "done"]) {
      if (byClass[cls]) return cls;
    }
    return "waiting";
  }
  // a group's line: what needs attention first, then how far it is
  function groupSummary(byClass, total) {
    const parts = ["failed", "running", "queued"].filter((cls) => byClass[cls])
      .map((cls) => `${num(byClass[cls])} ${LABEL[cls]}`).slice(0, 2);
    parts.push(`${Math.floor((100 * byClass.done) / Math.max(total, 1))} % done`);
    return parts.join(" · ");
  }
  function summary(byClass) {
    return CLASSES.filter((cls) => byClass[cls]).slice(0, 3)
      .map((cls) => `${num(byClass[cls])} ${LABEL[cls]}`).join(" · ");
  }
  const clip = (text, n) => (text.length > n ? text.slice(0, n - 1) + "…" : text);

  // --- the jobs table -----------------------------------------------------------------------
  const COLUMNS = [
    ["id", "Job"], ["state", "Status"], ["exit", "Exit"], [null, "Reason"],
    [null, "Scheduler id"], ["start", "Started"], ["end", "Ended"], ["duration", "Duration"],
    ["attempt", "Attempt"],
  ];
  const PAGE = 100;

  function jobsView(id, body, query) {
    const params = {
      state: query.get("state") || "", q: query.get("q") || "", sort: query.get("sort") || "order",
      order: query.get("order") || "asc", page: Number(query.get("page") || 0),
      group: query.get("group") || "",
    };
    const chips = h("div", { class: "chips", id: "state-filter" });
    const search = h("input", { type: "search", placeholder: "Search by id or name…",
      value: params.q, "aria-label": "search jobs" });
    const groupChip = h("span");
    const table = h("table", { id: "jobs" });
    const pager = h("div", { class: "pager" });
    body.replaceChildren(h("div", { class: "row" }, chips, h("div", { class: "spacer" }),
      groupChip, search), h("div", { class: "table-wrap spaced" }, table), pager);
    let timer = null, shown = "", requested = 0;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { params.q = search.value; params.page = 0; update(); }, 250);
    });
    function update() {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) {
        if (v !== "" && !(k === "page" && v === 0) && !(k === "sort" && v === "order")
            && !(k === "order" && v === "asc")) q.set(k, v);
      }
      const qs = q.toString();
      history.replaceState(null, "", `${wfHref(id)}/jobs${qs ? "?" + qs : ""}`);
      return load();
    }
    async function load() {
      const q = new URLSearchParams({ offset: params.page * PAGE, limit: PAGE, sort: params.sort,
                                      order: params.order });
      if (params.state) q.set("state", params.state);
      if (params.q) q.set("q", params.q);
      if (params.group !== "") q.set("group", params.group);
      const ticket = ++requested;
      const data = await api(`${wfPath(id)}/jobs?${q}`);
      if (ticket !== requested) return;  // a later filter, sort or page was asked meanwhile
      const key = JSON.stringify([params, data]);
      if (key === shown) return;  // unchanged: leave the rows under the pointer alone
      shown = key;
      const all = CLASSES.reduce((n, cls) => n + data.counts[cls], 0);
      chips.replaceChildren(
        chip("", `All ${num(all)}`),
        ...CLASSES.filter((cls) => data.counts[cls] || params.state === cls).map((cls) =>
          chip(cls, `${LABEL[cls]} ${num(data.counts[cls])}`)));
      groupChip.replaceChildren(params.group === "" ? "" : h("button", { class: "chip active",
        title: "show every job", onclick: () => { params.group = ""; params.page = 0; update(); } },
        `group ${params.group} ×`));
      table.replaceChildren(
        h("thead", {}, h("tr", {}, COLUMNS.map(([key, text]) => {
          const sorted = key && params.sort === key;
          return h("th", { class: `${key ? "sortable" : ""}${sorted ? " sorted" : ""}` +
                                  `${sorted && params.order === "desc" ? " desc" : ""}`,
                           "data-sort": key, text, onclick: key ? () => {
            if (params.sort === key) params.order = params.order === "asc" ? "desc" : "asc";
            else { params.sort = key; params.order = "asc"; }
            params.page = 0; update();
          } : null });
        }))),
        h("tbody", {}, data.rows.length ? data.rows.map((job) => h("tr", {
          class: "link job", "data-href": jobHref(id, job.id), "data-job": job.id },
          h("td", {}, h("a", { href: jobHref(id, job.id), "data-nav": true, text: job.id }),
            job.name ? h("div", { class: "muted", text: job.name }) : ""),
          h("td", {}, stateBadge(job.class)),
          h("td", { class: "mono", text: exitText(job) }),
          h("td", { class: "reason", title: job.exit_reason || "", text: job.exit_reason || "" }),
          h("td", { class: "mono", text: job.scheduler_job_id || "" }),
          h("td", { text: date(job.execution_date) }),
          h("td", { text: date(job.ending_date) }),
          h("td", { class: "num", text: job.execution_date ? duration(job.duration_s) : "–" }),
          h("td", { class: "num", text: job.attempt })))
          : h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty-state",
                                  text: "No job matches." }))));
      const pages = Math.max(1, Math.ceil(data.total / PAGE));
      const go = (page) => () => { params.page = page; update(); };
      pager.replaceChildren(
        h("span", { class: "muted", text: data.total ? `${num(data.offset + 1)}–` +
          `${num(Math.min(data.total, data.offset + PAGE))} of ${num(data.total)}` : "" }),
        h("button", { class: "small", disabled: params.page === 0, onclick: go(0) }, "«"),
        h("button", { class: "small", disabled: params.page === 0, onclick: go(params.page - 1),
                      "data-page": "previous" }, "‹ previous"),
        h("span", { text: `page ${num(params.page + 1)} of ${num(pages)}` }),
        h("button", { class: "small", disabled: params.page >= pages - 1, onclick: go(params.page + 1),
                      "data-page": "next" }, "next ›"),
        h("button", { class: "small", disabled: params.page >= pages - 1, onclick: go(pages - 1) }, "»"));
    }
    function chip(cls, text) {
      return h("button", { class: `chip${params.state === cls ? " active" : ""}`, "data-state": cls,
        onclick: () => { params.state = cls; params.page = 0; update(); } },
        cls ? h("span", { class: `dot st-${cls}` }) : "", text);
    }
    return { refresh: load };
  }

  // --- the timeline -------------------------------------------------------------------------
  function timelineView(id, body) {
    const wrap = h("div", { class: "timeline-wrap" });
    const note = h("p", { class: "muted" });
    body.replaceChildren(note, wrap);
    return {
      async refresh() {
        const data = await api(`${wfPath(id)}/timeline`);
        note.textContent = data.mode === "jobs"
          ? "One lane per job: queued (grey), then running until its end, coloured by how it ended."
          : "Too many jobs for one lane each: one lane per group of the graph, from its first " +
            "start to its last end; the chart on top counts the jobs running.";
        if (!data.lanes.length) {
          wrap.replaceChildren(h("div", { class: "empty-state", text: "No job has started yet." }));
          return;
        }
        wrap.replaceChildren(drawTimeline(id, data, wrap.clientWidth - 20));
      },
    };
  }

  function drawTimeline(id, data, width) {
    const labelW = 190, chartH = 70, laneH = data.mode === "jobs" ? 16 : 26, top = chartH + 34;
    const plotW = Math.max(300, width - labelW - 20);
    const span = data.span_s || 1;
    const xs = (t) => labelW + (plotW * t) / span;
    const height = top + data.lanes.length * laneH + 10;
    const svg = s("svg", { class: "timeline", width: labelW + plotW + 10, height });
    // ticks
    const step = niceStep(span / 8);
    for (let t = 0; t <= span + 1e-9; t += step) {
      svg.append(s("line", { class: "grid", x1: xs(t), x2: xs(t), y1: 20, y2: height }),
        s("text", { x: xs(t), y: 14, "text-anchor": "middle", text: duration(t) }));
    }
    // running jobs over time
    const peak = Math.max(1, ...data.running);
    const bw = plotW / Math.max(1, data.running.length);
    let d = `M${labelW},${20 + chartH}`;
    data.running.forEach((n, i) => {
      const y = 20 + chartH - (chartH * n) / peak;
      d += ` L${labelW + i * bw},${y} L${labelW + (i + 1) * bw},${y}`;
    });
    d += ` L${labelW + plotW},${20 + chartH} Z`;
    svg.append(s("path", { class: "area", d }),
      s("text", { x: labelW - 8, y: 32, "text-anchor": "end", text: `${num(peak)} running` }),
      s("line", { class: "axis", x1: labelW, x2: labelW + plotW, y1: 20 + chartH, y2: 20 + chartH }));
    data.lanes.forEach((lane, i) => {
      const y = top + i * laneH;
      const g = s("g", { class: "lane-link" });
      if (data.mode === "jobs") {
        g.append(s("text", { class: "lane", x: labelW - 8, y: y + laneH - 4, "text-anchor": "end",
                             text: clip(lane.id, 26) }));
        if (lane.queued !== null && lane.start !== null && lane.start > lane.queued) {
          g.append(s("rect", { class: "queued", x: xs(lane.queued), y: y + 3,
                               width: Math.max(1, xs(lane.start) - xs(lane.queued)), height: laneH - 6 }));
        }
        if (lane.start !== null) {
          const end = lane.end === null ? span : lane.end;
          g.append(s("rect", { class: `st-${lane.class}`, x: xs(lane.start), y: y + 2, rx: 2,
                               width: Math.max(2, xs(end) - xs(lane.start)), height: laneH - 4 },
            s("title", { text: `${lane.id}: ${LABEL[lane.class]}, ${duration(lane.start)} → ` +
                               `${lane.end === null ? "now" : duration(lane.end)}` })));
        }
        g.addEventListener("click", () => app.go(jobHref(id, lane.id)));
      } else {
        const total = CLASSES.reduce((n, c) => n + lane.counts[c], 0);
        g.append(s("text", { class: "lane", x: labelW - 8, y: y + laneH / 2 + 4, "text-anchor": "end",
                             text: `${clip(lane.label, 20)} ×${num(total)}` }));
        if (lane.start !== null) {
          let x = xs(lane.start);
          const w = Math.max(2, xs(lane.end === null ? span : lane.end) - x);
          for (const cls of CLASSES) {
            if (!lane.counts[cls]) continue;
            const part = (w * lane.counts[cls]) / total;
            g.append(s("rect", { class: `st-${cls}`, x, y: y + 4, width: Math.max(part, 1),
                                 height: laneH - 8 }));
            x += part;
          }
          g.append(s("title", { text: `${lane.label}: ${duration(lane.start)} → ` +
            `${lane.end === null ? "now" : duration(lane.end)}\n` + summary(lane.counts) }));
        }
        g.addEventListener("click", () => app.go(`${wfHref(id)}/jobs?group=${lane.node}`));
      }
      svg.append(g);
    });
    return svg;
  }

  function niceStep(raw) {
    for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                        14400, 21600, 43200, 86400]) {
      if (step >= raw) return step;
    }
    return Math.ceil(raw / 86400) * 86400;
  }

  // --- the efficiency report --------------------------------------------------------------
  // What `jobbridge report WF` shows, computed and drawn by the server with the same code
  // (jobbridge.report): the summary, the efficiency histograms, the timeline of every
  // attempt and the table of attempts (asked against used, and who measured each
  // figure), 100 rows a page. A failed attempt's row leads to its job's stderr and reason.
  const REPORT_FIGURES = ["cpu_efficiency", "memory_efficiency", "time_efficiency"];
  const REPORT_NUMERIC = [2, 3, 4, 5, 6, 7, 8, 9];

  function reportView(id, body) {
    const summary = h("table", { class: "summary", id: "report-summary" });
    const histograms = h("div", { class: "report-figures", id: "report-figures" });
    const timeline = h("div", { class: "report-timeline", id: "report-timeline" });
    const table = h("table", { id: "report" });
    const pager = h("div", { class: "pager" });
    body.replaceChildren(h("div", { class: "card" }, summary),
      h("h2", { text: "Efficiency" }), histograms,
      h("p", { class: "muted", text: "Memory and time efficiency count only the attempts " +
        "that asked for memory_mb or walltime_s." }),
      h("h2", { text: "Timeline" }), timeline,
      h("h2", { text: "Attempts" }), h("div", { class: "table-wrap" }, table), pager);
    let page = 0, shown = "";
    async function load() {
      const data = await api(`${wfPath(id)}/report?offset=${page * PAGE}&limit=${PAGE}`);
      const key = JSON.stringify(data);
      if (key === shown) return;  // unchanged: leave the page (and a selection) alone
      shown = key;
      summary.replaceChildren(...data.summary.map(([label, text]) =>
        h("tr", {}, h("th", { text: label }), h("td", { text }))));
      histograms.replaceChildren(...REPORT_FIGURES.map((name) => svgFigure(name, data.figures[name])));
      timeline.replaceChildren(svgFigure("timeline", data.figures.timeline));
      table.replaceChildren(
        h("thead", {}, h("tr", {}, data.header.map((text, i) =>
          h("th", { class: REPORT_NUMERIC.includes(i) ? "num" : "", text })))),
        h("tbody", {}, data.rows.map((row) => reportRow(id, row))));
      const pages = Math.max(1, Math.ceil(data.total / PAGE));
      const go = (to) => () => { page = to; load(); };
      pager.replaceChildren(
        h("span", { class: "muted", text: data.total ? `${num(data.offset + 1)}–` +
          `${num(Math.min(data.total, data.offset + PAGE))} of ${num(data.total)} rows` : "" }),
        h("button", { class: "small", disabled: page === 0, onclick: go(page - 1),
                      "data-page": "previous" }, "‹ previous"),
        h("span", { text: `page ${num(page + 1)} of ${num(pages)}` }),
        h("button", { class: "small", disabled: page >= pages - 1, onclick: go(page + 1),
                      "data-page": "next" }, "next ›"));
    }
    return { refresh: load };
  }

  function reportRow(id, row) {
    const failed = row.outcome === "failed" || row.outcome === "retried";
    return h("tr", { class: `attempt ${row.outcome}`, "data-job": row.job,
                     "data-attempt": row.cells[1], "data-outcome": row.outcome },
      row.cells.map((text, i) => {
        if (i === 0) return h("td", {}, h("a", { href: jobHref(id, row.job), "data-nav": true, text }));
        if (i === 10 && failed) {  // how it ended, and where to read why
          return h("td", { class: "exit" }, text, " ", h("a", { href: jobHref(id, row.job),
            "data-nav": true, class: "stderr-link", title: "its stderr and reason" }, "stderr ›"));
        }
        return h("td", { class: REPORT_NUMERIC.includes(i) ? "num" : i === 11 ? "muted" : "", text });
      }));
  }

  // A figure drawn by the server (jobbridge.report escapes every text it writes), parsed
  // as SVG (XML, never HTML); the page's CSP runs no script nor inline handler in it.
  function svgFigure(name, text) {
    const parsed = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
    if (parsed.nodeName !== "svg") return h("div", { class: "error-box", text: `${name}: unreadable figure` });
    const svg = document.importNode(parsed, true);
    svg.setAttribute("data-figure-name", name);
    return svg;
  }

  // --- page: a job --------------------------------------------------------------------------
  // A job page is redrawn only when what it shows changed (a selection in its output
  // survives other jobs' changes), and polled every 2 s while the job has not ended:
  // its output files grow without the store changing.
  function jobPage(id, jobId) {
    let showEnv = false, shown = "";
    const timer = setInterval(() => { if (!ended) app.refresh(); }, 2000);
    let ended = false;
    return {
      async refresh() {
        const job = await api(`${wfPath(id)}/job?id=${encodeURIComponent(jobId)}${showEnv ? "&env=1" : ""}`);
        ended = job.ended;
        const text = JSON.stringify(job);
        if (text === shown) return;
        shown = text;
        drawJob(id, job, showEnv, () => { showEnv = !showEnv; shown = ""; app.refreshSoon(); });
      },
      leave() { clearInterval(timer); },
    };
  }

  function drawJob(id, job, showEnv, toggleEnv) {
    const wfTitle = `Workflow ${id}${job.workflow.name ? " · " + job.workflow.name : ""}`;
    crumbs({ text: "workflows", href: "/" }, { text: wfTitle, href: wfHref(id) },
           { text: "jobs", href: `${wfHref(id)}/jobs` }, { text: job.id });
    document.title = `jobbridge · ${job.id}`;
    const exit = exitText(job);
    const kill = job.ended ? "" : h("button", { class: "danger", "data-action": "kill",
      onclick: () => act(`${wfPath(id)}/job/kill?id=${encodeURIComponent(job.id)}`,
        `Kill job ${job.id}?`, "It is killed if it runs, or will not run if it has not " +
        "started; the jobs depending on it will not run. The rest of the workflow goes on.",
        "Kill job") }, "Kill");
    const scroll = window.scrollY;
    const reason = job.exit_reason || (job.class === "failed" ? endText(job) : "");
    // a failed job: its output first, what one comes to read
    const outputs = h("div", { class: "grid2" },
      tail("stderr", id, job, job.stderr), tail("stdout", id, job, job.stdout));
    main.replaceChildren(
      h("div", { class: "row" }, h("h1", {}, `Job ${job.id}`, stateBadge(job.class, job.status.replace(/_/g, " "))),
        h("div", { class: "spacer" }), kill),
      job.name ? h("div", { class: "muted", text: job.name }) : "",
      reason ? h("div", { class: "reason-box", id: "job-reason", text: reason }) : "",
      job.class === "failed" ? outputs : "",
      h("div", { class: "grid2" },
        h("div", { class: "card" }, h("h2", { text: "Status" }), h("dl", { class: "kv" },
          kv("status", h("span", { id: "job-status", text: job.status.replace(/_/g, " ") })),
          kv("exit", h("span", { id: "job-exit", class: "mono", text: exit || "–" })),
          job.exit_status ? kv("exit status", h("span", { class: "mono", text: job.exit_status })) : "",
          kv("resource", `${job.resource} (${job.scheduler_type})`),
          kv("scheduler id", h("span", { class: "mono", text: job.scheduler_job_id || "–" })),
          kv("attempt", String(job.attempt)),
          kv("submitted", date(job.submission_date)), kv("started", date(job.execution_date)),
          kv("ended", date(job.ending_date)),
          kv("duration", job.execution_date ? duration(((job.ending_date ? new Date(job.ending_date)
            : new Date()) - new Date(job.execution_date)) / 1000) : "–"))),
        h("div", { class: "card" }, h("h2", { text: "Resources: used / asked for" }), usageTable(job),
          job.resource_usage ? h("div", { class: "muted mono", text: job.resource_usage }) : "")),
      attemptsCard(job),
      h("div", { class: "card" }, h("h2", { text: "Command" }),
        h("div", { class: "argv", id: "job-argv" }, job.command.map((arg) => h("code", { text: arg }))),
        h("dl", { class: "kv" },
          kv("working directory", h("span", { class: "mono", text: job.working_directory || "–" })),
          job.stdin ? kv("stdin", h("span", { class: "mono", text: job.stdin })) : "",
          job.queue ? kv("queue", job.queue) : "",
          job.native_specification ? kv("native options", h("span", { class: "mono",
            text: [].concat(job.native_specification).join(" ") })) : "",
          job.parallel_job_info ? kv("parallel", `${job.parallel_job_info.config_name}: ` +
            `${job.parallel_job_info.nodes_number} node(s) × ${job.parallel_job_info.cpu_per_node} CPU(s)`) : "",
          job.priority ? kv("priority", String(job.priority)) : "",
          kv("environment", envList(job.env, showEnv, toggleEnv)))),
      h("div", { class: "card neighbours" }, h("h2", { text: "Dependencies" }), h("dl", { class: "kv" },
        kv("waits for", neighbours(id, job.depends_on)), kv("needed by", neighbours(id, job.needed_by)))),
      job.class === "failed" ? "" : outputs);
    window.scrollTo(0, scroll);
  }

  const SIGNALS = { 1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
                    8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 15: "SIGTERM",
                    24: "SIGXCPU", 25: "SIGXFSZ" };
  // How a job ended, in words, when the scheduler gave no reason.
  function endText(job) {
    switch (job.exit_status) {
      case "finished_regularly": return `exited with code ${job.exit_value}`;
      case "finished_signal":
        return `killed by signal ${job.term_sig}${SIGNALS[job.term_sig] ? " (" + SIGNALS[job.term_sig] + ")" : ""}`;
      case "killed_by_user": return "killed by the user";
      default: return exitText(job);
    }
  }

  function kv(key, value) { return [h("dt", { text: key }), h("dd", {}, value)]; }

  // What the job's latest attempt used against what it asked for, each figure with who
  // measured it (the scheduler's accounting, or the job wrapper's own): jobbridge.report's.
  function usageTable(job) {
    const last = job.attempts[job.attempts.length - 1];
    if (!last) return h("p", { class: "muted", text: "Not submitted yet." });
    const u = last.used, r = last.requested, e = last.efficiency, by = last.sources;
    const rows = [
      ["CPUs", "", String(r.cpus), null, null],
      ["CPU time", u.cpu_s === null ? "–" : duration(u.cpu_s), "", null, by.cpu_s],
      // under a second of wall time the efficiency is mostly rounding: not judged
      ["CPU efficiency", e.cpu === null ? "–" : `${Math.round(100 * e.cpu)} %`, "100 %",
        e.cpu !== null && u.wall_s >= 1 ? e.cpu : null, by.cpu_s],
      ["memory (peak)", u.mem_bytes === null ? "–" : memory(u.mem_bytes / 1024),
        r.memory_mb ? memory(r.memory_mb * 1024) : "no limit", e.memory, by.mem_bytes],
      ["wall time", u.wall_s === null ? "–" : duration(u.wall_s),
        r.walltime_s ? duration(r.walltime_s) : "no limit", e.time, by.wall_s],
    ];
    return h("table", { class: "usage", id: "job-usage" }, h("thead", {}, h("tr", {},
      ["", "used", "asked", "", "measured by"].map((t) => h("th", { text: t })))), h("tbody", {}, rows.map(
      ([name, used, asked, ratio, source]) => h("tr", {}, h("td", { text: name }),
        h("td", { class: ratio > 1 ? "over" : "", text: used }), h("td", { text: asked }),
        h("td", {}, ratio === null ? "" : ratioBar(ratio)),
        h("td", { class: "muted source", text: source || "" })))));
  }

  // Every attempt of a retried job: its scheduler id, how it ended and why.
  function attemptsCard(job) {
    if (job.attempts.length < 2) return "";
    return h("div", { class: "card", id: "job-attempts" }, h("h2", { text: "Attempts" }),
      h("table", { class: "usage" }, h("thead", {}, h("tr", {}, ["attempt", "scheduler id",
        "started", "ended", "how it ended", "peak memory / asked", "wall time / asked"].map((t) =>
        h("th", { text: t })))),
      h("tbody", {}, job.attempts.map((a) => h("tr", { class: `attempt ${a.outcome}`,
        "data-attempt": a.attempt },
        h("td", { class: "num", text: a.attempt }),
        h("td", { class: "mono", text: a.scheduler_job_id || "–" }),
        h("td", { text: date(a.execution_date) }), h("td", { text: date(a.ending_date) }),
        h("td", { text: [exitText(a) || a.outcome, a.exit_reason].filter(Boolean).join(": ") +
                        (a.outcome === "retried" ? " (retried)" : "") }),
        h("td", { text: `${a.used.mem_bytes === null ? "–" : memory(a.used.mem_bytes / 1024)} / ` +
                        `${a.requested.memory_mb ? memory(a.requested.memory_mb * 1024) : "no limit"}` }),
        h("td", { text: `${a.used.wall_s === null ? "–" : duration(a.used.wall_s)} / ` +
                        `${a.requested.walltime_s ? duration(a.requested.walltime_s) : "no limit"}` }))))));
  }

  function ratioBar(ratio) {
    const bar = h("div", { class: "bar", title: `${Math.round(100 * ratio)} % of what was asked` });
    const seg = h("span", { class: ratio > 1 ? "st-failed" : ratio > 0.8 ? "st-queued" : "st-done" });
    seg.style.width = `${Math.min(100, 100 * ratio)}%`;
    bar.append(seg);
    return bar;
  }

  function envList(env, showEnv, toggle) {
    const names = Object.keys(env);
    if (!names.length) return h("span", { class: "muted", text: "inherited only" });
    return h("div", {}, h("div", { class: "mono" }, names.map((name) => h("div", {}, `${name}=`,
      showEnv ? h("span", { class: "env-value", text: env[name] })
              : h("span", { class: "env-value hidden", text: "••••••" })))),
      h("button", { class: "small", id: "env-toggle", onclick: toggle },
        showEnv ? "hide values" : "show values"));
  }

  function neighbours(id, side) {
    if (!side.total) return h("span", { class: "muted", text: "none" });
    return h("div", {}, side.jobs.map((job) => h("a", { href: jobHref(id, job.id), "data-nav": true },
      h("span", { class: `dot st-${job.class}` }), job.id)),
      side.total > side.jobs.length ? h("span", { class: "muted",
        text: `and ${num(side.total - side.jobs.length)} more` }) : "");
  }

  function tail(stream, id, job, file) {
    const card = h("div", { class: "card", id: stream });
    const link = `${wfPath(id)}/job/${stream}?id=${encodeURIComponent(job.id)}`;
    if (file === null) {
      card.append(h("h2", { text: stream }), h("p", { class: "muted",
        text: stream === "stderr" ? "joined into stdout" : "not kept" }));
      return card;
    }
    card.append(h("div", { class: "row" }, h("h2", { text: stream }), h("div", { class: "spacer" }),
      file.exists ? h("a", { href: link, download: `${job.id}.${stream}.txt` },
        `download (${bytes(file.size)})`) : ""),
      h("div", { class: "muted mono", text: file.path }),
      h("pre", { class: `tail${file.text ? "" : " empty"}`,
        text: file.text ? (file.truncated ? "… (the beginning is in the download)\n" : "") + file.text
          : file.exists ? "(empty)" : file.error || "(not written yet)" }));
    return card;
  }

  // --- the router and live updates ----------------------------------------------------------
  // Refreshes never overlap, and a page that took T to refresh waits 2T before the
  // next (at least 0.4 s; its first drawing is not counted): a 100,000-job workflow
  // follows the store every second or two without keeping the server busy.
  const app = {
    page: null,
    busy: false,
    again: false,
    last: 0,
    cost: 0,
    go(href) {
      history.pushState(null, "", href);
      this.route();
    },
    route() {
      if (this.page && this.page.leave) this.page.leave();
      const url = new URL(location.href);
      const path = url.pathname;
      let m;
      if (path === "/") this.page = workflowsPage();
      else if ((m = path.match(/^\/workflows\/([^/]+)\/job$/))) {
        this.page = jobPage(decodeURIComponent(m[1]), url.searchParams.get("id"));
      } else if ((m = path.match(/^\/workflows\/([^/]+)(?:\/(jobs|timeline|graph|report))?$/))) {
        this.page = workflowPage(decodeURIComponent(m[1]), m[2] || "graph", url.searchParams);
      } else {
        this.page = null;
        showError({ status: 404, message: path });
        return;
      }
      window.scrollTo(0, 0);
      this.refresh(true, true);
    },
    async refresh(forced, first) {
      const wait = this.last + Math.max(400, 2 * this.cost) - Date.now();
      if (this.busy || (!forced && wait > 0)) {
        if (!this.again) setTimeout(() => { this.again = false; this.refresh(); }, Math.max(wait, 100));
        this.again = true;
        return;
      }
      this.busy = true;
      const page = this.page, started = Date.now();
      try {
        if (page) await page.refresh();
      } catch (error) {
        if (page === this.page) showError(error);
      } finally {
        this.busy = false;
        this.last = Date.now();
        // a page's first drawing does one-off work (a large graph's layout, built once):
        // it would hold back the first live change by twice that, not what refreshes cost
        this.cost = first ? 0 : this.last - started;
        document.body.dataset.refreshed = String(this.last);
      }
    },
    refreshSoon() { setTimeout(() => this.refresh(true), 50); },
  };

  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
        event.shiftKey || event.altKey) return;
    const link = event.target.closest("a[data-nav]");
    if (link) {
      event.preventDefault();
      app.go(link.getAttribute("href"));
      return;
    }
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button")) app.go(row.dataset.href);
  });
  window.addEventListener("popstate", () => app.route());

  const live = document.getElementById("live");
  function connect() {
    const events = new EventSource("/api/events");
    events.addEventListener("open", () => { live.className = "live on"; live.textContent = "live"; });
    events.addEventListener("change", () => app.refresh());
    events.addEventListener("error", () => { live.className = "live off"; live.textContent = "offline"; });
  }
  window.jobbridge = app;  // for scripts and tests: jobbridge.refresh()
  app.route();
  connect();
})();
