"""Graph viewer benchmark: ``flock /tmp/bench.lock .venv/bin/python bench/graph_layout.py``.

Drives Debian's Chromium (Playwright) through the architecture page's graph viewer
(``static/js/graph/``, the page's own partial rendered by Django's template engine) on
generated Llama-style module graphs of about 1k, 5k and 10k nodes and on the real resnet18
and vit_b_16 module graphs. For each: open the page (it opens folded when big), then unfold
every module ("Fold at depth: none") and measure

* ``layout_s``: elkjs layered layout time in the Web Worker (posting the graph and getting the
  positions back included),
* ``render_s``: first render after the layout came back, up to the next animation frame,
* ``longest_task_ms``: the longest main-thread task while unfolding (PerformanceObserver
  ``longtask``; Chromium reports tasks over 50 ms, so 0 means none over 50 ms),
* ``click_ms``: while the worker lays out, a click on "+" and the time until the zoom label
  changed (the page answering).

Prints a table and writes ``bench/results/graph_layout.json``. A static HTTP server stands in
for Django (no database needed): it serves ``static/``, elkjs from ``node_modules`` and the
viewer JSON built by ``webapp.architectures.graphview.viewer_document``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "graph_layout.json"
NODES_PER_LAYER = 14


def generated_graph(nodes: int) -> dict[str, Any]:
    """A Llama-style module graph (``weightspace.module-graph/1``) with about ``nodes`` nodes.

    Each decoder layer is 14 nodes (RMSNorm, q/k/v projections, attention, o projection,
    residual add, RMSNorm, gate/up projections, SiLU, multiply, down projection, residual
    add) with the module paths a Hugging Face Llama has, so folding by module works as on a
    real model. d_model 2048 and 8,192 MLP width, like Llama 3.2 1B.
    """
    d, ffn, vocab = 2048, 8192, 128_256
    out: list[dict[str, Any]] = []
    edges: list[list[int]] = []

    def add(name: str, op: str, type_: str, params: list | None = None, module: str = "",
            sources: tuple[int, ...] = (), shape: list | None = None) -> int:  # fmt: skip
        node: dict[str, Any] = {"id": len(out), "name": name, "op": op, "type": type_,
                                "params": params or [], "out_shape": shape}  # fmt: skip
        if module:
            node["module"] = module
        out.append(node)
        edges.extend([s, node["id"]] for s in sources)
        return node["id"]

    def linear(path: str, rows: int, cols: int, source: int) -> int:
        weight = [{"name": f"{path}.weight", "shape": [rows, cols]}]
        return add(path, "module", "Linear", weight, sources=(source,), shape=[1, 128, rows])

    def norm(path: str, source: int) -> int:
        weight = [{"name": f"{path}.weight", "shape": [d]}]
        return add(path, "module", "LlamaRMSNorm", weight, sources=(source,), shape=[1, 128, d])

    x = add("input_ids", "input", "input", shape=[1, 128])
    embedding = [{"name": "model.embed_tokens.weight", "shape": [vocab, d]}]
    stream = add("model.embed_tokens", "module", "Embedding", embedding, sources=(x,))
    layers = max(1, (nodes - 5) // NODES_PER_LAYER)
    for i in range(layers):
        p = f"model.layers.{i}"
        a = norm(f"{p}.input_layernorm", stream)
        q = linear(f"{p}.self_attn.q_proj", d, d, a)
        k = linear(f"{p}.self_attn.k_proj", 512, d, a)
        v = linear(f"{p}.self_attn.v_proj", 512, d, a)
        att = add(f"sdpa_{i}", "function", "scaled_dot_product_attention",
                  module=f"{p}.self_attn", sources=(q, k, v))  # fmt: skip
        o = linear(f"{p}.self_attn.o_proj", d, d, att)
        stream2 = add(f"add_{2 * i}", "function", "add", module=p, sources=(stream, o))
        b = norm(f"{p}.post_attention_layernorm", stream2)
        gate = linear(f"{p}.mlp.gate_proj", ffn, d, b)
        up = linear(f"{p}.mlp.up_proj", ffn, d, b)
        act = add(f"{p}.mlp.act_fn", "module", "SiLU", sources=(gate,))
        mul = add(f"mul_{i}", "function", "mul", module=f"{p}.mlp", sources=(act, up))
        down = linear(f"{p}.mlp.down_proj", d, ffn, mul)
        stream = add(f"add_{2 * i + 1}", "function", "add", module=p, sources=(stream2, down))
    final = norm("model.norm", stream)
    head = linear("lm_head", vocab, d, final)
    add("output", "output", "output", sources=(head,))
    return {"format": "weightspace.module-graph/1", "method": "generated", "nodes": out,
            "edges": edges, "folded": 0, "unknown_ops": [], "truncated": False}  # fmt: skip


def real_graph(name: str) -> dict[str, Any]:
    """The stored documents an inspect job writes for a zoo model, built in this process."""
    from workers.pipelines.inspect import ModelSpec, inspect_model

    result = inspect_model(ModelSpec(source="zoo", name=name))
    return {"graph.json": result.graph, "arch_graph.json": result.arch_graph,
            "param_graph.json": result.param_graph}  # fmt: skip


def page_html(viewer_url: str) -> str:
    """The architecture page's viewer partial, rendered by Django's template engine."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    os.environ.setdefault("DEBUG", "1")  # the development settings; no database is touched
    import django

    django.setup()
    from django.template.loader import render_to_string

    body = render_to_string(
        "architectures/partials/graph.html", {"architecture": {"pk": 1}, "graph": None}
    )
    body = body.replace("/architectures/1/viewer.json", viewer_url)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<link rel="stylesheet" href="/static/css/weightspace.css"></head>'
        f'<body><main style="max-width:1300px">{body}</main></body></html>'
    )


class _Handler(http.server.SimpleHTTPRequestHandler):
    documents: dict[str, bytes] = {}
    html = b""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path, _, query = self.path.partition("?")
        if path == "/":
            case = query.removeprefix("case=").split("&")[0]
            return self._send(self.html.replace(b"CASE", case.encode()), "text/html")
        if path in self.documents:
            return self._send(self.documents[path], "application/json")
        for prefix, folder in (
            ("/static/vendor/elkjs/", ROOT / "node_modules" / "elkjs" / "lib"),
            ("/static/", ROOT / "static"),
        ):
            if path.startswith(prefix):
                file = folder / path[len(prefix) :]
                if file.is_file() and folder in file.resolve().parents:
                    kind = "text/javascript" if file.suffix == ".js" else "text/css"
                    return self._send(file.read_bytes(), kind)
        self.send_error(404)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


LONG_TASKS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""


def measure(
    page: Any, base: str, name: str, timeout_s: float, renderer: str = ""
) -> dict[str, Any]:
    page.goto(f"{base}/?case={name}&renderer={renderer}")
    page.wait_for_selector(".gv[data-state=ready]", timeout=timeout_s * 1000)
    opened = int(page.get_attribute(".gv", "data-boxes"))
    page.evaluate("window.__longTasks = []")
    started = time.perf_counter()
    page.select_option(".gv-depth", "all")
    # The page must answer while the worker lays out: time a zoom click.
    before = page.inner_text(".gv-scale")
    click_started = time.perf_counter()
    page.click(".gv-zoom-in")
    page.wait_for_function(f"document.querySelector('.gv-scale').textContent !== {before!r}")
    click_ms = (time.perf_counter() - click_started) * 1000
    page.wait_for_selector(".gv[data-state=ready]", timeout=timeout_s * 1000)
    wall = time.perf_counter() - started
    # Panning the unfolded graph: a 20-step drag, then two frames; long tasks meanwhile.
    page.evaluate("window.__longTasks = []")
    stage = page.locator(".gv-stage").bounding_box()
    pan_started = time.perf_counter()
    page.mouse.move(stage["x"] + 100, stage["y"] + 100)
    page.mouse.down()
    page.mouse.move(stage["x"] + 500, stage["y"] + 400, steps=20)
    page.mouse.up()
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    pan_ms = (time.perf_counter() - pan_started) * 1000
    pan_longest = page.evaluate("Math.max(0, ...window.__longTasks)")
    stats = page.evaluate("""() => {
        const v = document.querySelector('.gv').viewer;
        return {timings: v.timings, renderer: document.querySelector('.gv').dataset.renderer,
                longest: Math.max(0, ...window.__longTasks), tasks: window.__longTasks.length};
    }""")
    timings = stats["timings"]
    return {
        "case": name,
        "nodes": timings["boxes"],
        "edges": timings["edges"],
        "opened_boxes": opened,
        "layout_s": round(timings["layout_s"], 3),
        "render_s": round(timings["render_s"], 3),
        "renderer": stats["renderer"],
        "longest_task_ms": round(stats["longest"], 1),
        "long_tasks": stats["tasks"],
        "click_ms": round(click_ms, 1),
        "unfold_wall_s": round(wall, 2),
        "pan_ms": round(pan_ms, 1),
        "pan_longest_task_ms": round(pan_longest, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", help="1k 5k 10k resnet18 vit_b_16 (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per layout")
    parser.add_argument(
        "--renderer", choices=["svg", "canvas"], default="", help="force one renderer"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from webapp.architectures.graphview import viewer_document

    cases = args.cases or ["1k", "5k", "10k", "resnet18", "vit_b_16"]
    documents: dict[str, bytes] = {}
    for case in cases:
        if case.endswith("k"):
            stored = {"graph.json": generated_graph(int(case[:-1]) * 1000)}
        else:
            stored = real_graph(case)
        doc = viewer_document(stored)
        doc["default_view"] = "module"
        documents[f"/viewer/{case}.json"] = json.dumps(doc).encode()
    # One page; "/?case=10k" points its viewer at that case's JSON.
    _Handler.documents, _Handler.html = documents, page_html("/viewer/CASE.json").encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        for case in cases:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(LONG_TASKS)
            page = context.new_page()
            rows.append(measure(page, base, case, args.timeout, args.renderer))
            context.close()
            print(json.dumps(rows[-1]), flush=True)
        browser.close()
    server.shutdown()
    header = ("case", "nodes", "edges", "opened_boxes", "layout_s", "render_s", "renderer",
              "longest_task_ms", "click_ms", "pan_ms", "pan_longest_task_ms")  # fmt: skip
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in header) + " |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    document = {"measured": measured, "cpu_count": os.cpu_count(), "rows": rows}
    results = RESULTS.with_name(f"graph_layout_{args.renderer}.json") if args.renderer else RESULTS
    results.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten {results.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
