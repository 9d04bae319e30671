"""The notebooks and the book: every notebook runs in the smoke preset; executed copies under book/ are not stale;
the book builds without warnings; every page renders in headless Chromium."""
import ast
import html
import json
from html.parser import HTMLParser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import wrap_code_cells as WRAP  # noqa: E402
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXECUTED = sorted((ROOT / "book").glob("*.ipynb"))


def _cells(path):
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


LOGIC = (ast.For, ast.While, ast.If, ast.IfExp, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp,
         ast.Lambda, ast.FunctionDef, ast.ClassDef, ast.Try, ast.With)


def _logic(source) -> list[str]:
    """The control-flow constructs of a code cell (IPython magics dropped): notebooks only call the library."""
    src = "".join(source) if isinstance(source, list) else source
    tree = ast.parse("\n".join(line for line in src.splitlines() if not line.lstrip().startswith("%")))
    return sorted({type(node).__name__ for node in ast.walk(tree) if isinstance(node, LOGIC)})


def test_the_logic_check_finds_loops_and_conditionals():
    assert _logic("x = [a for a in b]") == ["ListComp"]
    assert _logic("if x:\n    y()") == ["If"]
    assert _logic("%matplotlib inline\nfig = plots.f(report.g(p))") == []


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_shape(path):
    nb = json.loads(path.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert re.search(r'^preset: str = "cpu"$', src, re.M), "a typed preset parameter, safe by default"
    assert not re.search(r"^run_missing: bool = True", src, re.M), "Run All must not start training"
    assert all(re.match(r"^\w+: \w+ = ", line) for line in src.splitlines() if line and not line.startswith("#"))
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and not c.get("execution_count"), "source notebooks are stored without outputs"
            assert "sys.path" not in "".join(c["source"])
            assert not _logic(c["source"]), f"no logic in notebooks: {_logic(c['source'])} in {c['source'][:80]!r}"
            if "remove-cell" not in c.get("metadata", {}).get("tags", []):  # shown: must fit the page's width
                long = [x for x in "".join(c["source"]).splitlines() if len(x) > WRAP.WIDTH]
                assert not long, f"code wider than {WRAP.WIDTH} characters (book/_tools/wrap_code_cells.py): {long[0]}"


def test_the_code_wrapper_keeps_what_a_cell_does():
    src = ('report.show(report.task_table("dialogue-table", preset), "Table 5.2: a caption long enough to pass '
           'the width of a page by a good margin, preset " + preset + ") and more words after it to wrap again.")')
    out = WRAP.wrap(src)
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(src)) and out != src
    assert all(len(x) <= WRAP.WIDTH for x in out.splitlines()) and WRAP.wrap(out) == out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_preset(path, tmp_path):
    env = {**os.environ, "QLIB_RESULTS_DIR": str(tmp_path / "results"), "QLIB_RUNS_DIR": str(tmp_path / "runs"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    out = tmp_path / path.name
    proc = subprocess.run([sys.executable, "-m", "papermill", str(path), str(out), "-p", "preset", "smoke",
                           "-p", "run_missing", "True",
                           "--cwd", str(ROOT / "notebooks"), "-k", "python3", "--no-progress-bar"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the smoke preset makes every run, so every figure the notebook draws must be in its outputs
    draws = sum("plots." in "".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                if c["cell_type"] == "code")
    images = sum("image/png" in o.get("data", {}) for c in json.loads(out.read_text())["cells"]
                 for o in c.get("outputs", []))
    assert images >= draws, f"{draws} cells draw figures but only {images} images came out"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_executed_notebook_matches_its_source(path):
    source = ROOT / "notebooks" / path.name
    assert source.is_file(), f"{path} has no source notebook"
    assert _cells(path) == _cells(source), f"{path} is stale: run `make notebooks`"


def test_every_source_notebook_is_in_the_book():
    toc = (ROOT / "_toc.yml").read_text()
    for nb in NOTEBOOKS:
        assert (ROOT / "book" / nb.name).is_file(), f"no executed copy of {nb.name}: run `make notebooks`"
        assert f"book/{nb.stem}" in toc


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    # this interpreter's jupyter-book, whether or not its virtual environment is activated
    jupyter_book = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    proc = subprocess.run([*jupyter_book, "build", str(ROOT), "--path-output", str(out), "-W", "-n",
                           "--keep-going"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return out / "_build" / "html"


@pytest.mark.slow
def test_book_builds_without_warnings(built_book):
    assert (built_book / "index.html").is_file()


class _PageCheck(HTMLParser):
    """Images outside a captioned figure and tables whose first header cell is empty (a pandas index column), in
    a rendered page's DOM."""

    def __init__(self):
        super().__init__()
        self.stack, self.bare_images, self.empty_first_th, self._fig_caption = [], 0, 0, []
        self._table_th, self._in_th, self._th_text = [], False, ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self._fig_caption.append(False)
        if tag == "figcaption" and self._fig_caption:
            self._fig_caption[-1] = True
        if tag == "img" and "output" in " ".join(x.get("class", "") for x in self.stack) and "figure" not in \
                [x["tag"] for x in self.stack]:
            self.bare_images += 1
        if tag == "table":
            self._table_th.append(0)
        if tag == "th" and self._table_th:
            self._table_th[-1] += 1
            self._in_th, self._th_text = self._table_th[-1] == 1, ""
        if tag not in ("img", "br", "hr", "meta", "link", "input"):
            self.stack.append({"tag": tag, "class": a.get("class") or ""})

    def handle_data(self, data):
        if self._in_th:
            self._th_text += data

    def handle_endtag(self, tag):
        if tag == "th" and self._in_th:
            self.empty_first_th += not self._th_text.strip()
            self._in_th = False
        if tag == "table" and self._table_th:
            self._table_th.pop()
        while self.stack and self.stack[-1]["tag"] != tag:
            self.stack.pop()
        if self.stack:
            self.stack.pop()


def test_the_page_check_finds_bare_images_and_index_columns():
    page = _PageCheck()
    page.feed('<div class="cell_output"><img src="a.png"></div><table><tr><th></th><th>x</th></tr></table>')
    assert page.bare_images == 1 and page.empty_first_th == 1
    page = _PageCheck()
    page.feed('<div class="cell_output"><figure><img src="a.png"><figcaption>Fig</figcaption></figure></div>'
              '<table><tr><th>run</th></tr></table>')
    assert page.bare_images == 0 and page.empty_first_th == 0



def _page_text(dom: str) -> str:
    """The prose a reader sees in a rendered page's article: without scripts, styles, code blocks and rendered
    math (MathJax's containers), tags stripped and entities decoded (a table cell's ``&lt;unk&gt;`` is "<unk>")."""
    found = re.search(r"<article[^>]*>(.*)</article>", dom, re.S)
    body = found.group(1) if found else dom
    for tag in ("script", "style", "pre", "mjx-container", "mjx-assistive-mml"):
        body = re.sub(rf"<{tag}\b.*?</{tag}>", " ", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def _prose_words(dom: str) -> int:
    """Words of a page's text outside its tables (a table is read, not counted as prose)."""
    return len(_page_text(re.sub(r"<table\b.*?</table>", " ", dom, flags=re.S)).split())


_RAW_LATEX = re.compile(r"\\(?:mathcal|mathrm|mathbf|frac|alpha|gamma|lambda|max|mathbb)\b|\$\\")


def _raw_latex(text: str) -> list[str]:
    """LaTeX left unrendered in a page's text ("$\\mathcal{L}", "\\frac{")."""
    return sorted({m.group(0) for m in _RAW_LATEX.finditer(text)})


def test_the_page_text_checks_find_raw_latex_swallowed_tokens_and_long_pages():
    rendered = ('<article><p>loss <mjx-container><mjx-c></mjx-c></mjx-container> falls</p>'
                '<table><tr><td>the &lt;unk&gt; of</td></tr></table><pre>s = "$\\mathcal{L}$"</pre></article>')
    assert _raw_latex(_page_text(rendered)) == [] and "<unk>" in _page_text(rendered)
    assert _raw_latex(_page_text("<article><p>a $\\mathcal{L}_{dist}$ b</p></article>"))
    swallowed = "<article><table><tr><td>the <unk> of</td></tr></table></article>"  # unescaped: a tag, no text
    assert "<unk>" not in _page_text(swallowed)
    assert _prose_words("<article><p>" + "word " * 50 + "</p><table><tr><td>" + "x " * 99 +
                        "</td></tr></table></article>") == 50


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


# Run in the page after layout: every block of the article (code, outputs, tables, figures, math) whose content is
# wider than its box (a horizontal scrollbar) or that sticks out of the article's column, at a laptop's window width.
_OVERFLOW_JS = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const article = document.querySelector("article") || document.querySelector("main");
  const right = article.getBoundingClientRect().right;
  const found = [];
  const blocks = "pre, table, img, svg, mjx-container[display='true'], .cell_output, .output";
  for (const el of article.querySelectorAll(blocks)) {
    const wide = el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0;
    const out = el.getBoundingClientRect().right > right + 2;
    if (wide || out) found.push(`${el.tagName} (${el.scrollWidth} px in ${el.clientWidth}): ` +
                                (el.innerText || el.getAttribute("src") || "").slice(0, 60));
  }
  document.body.setAttribute("data-overflow", JSON.stringify(found));
}, 3000));
</script>
"""


def _chromium_dom(browser, page, profile, width=1366):
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", f"--window-size={width},900",
                           "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120).stdout


def _overflowing_blocks(browser, page, profile) -> list[str]:
    """The blocks of a rendered page that overflow horizontally (``_OVERFLOW_JS``), measured on a copy of the page
    beside it (so its relative links still resolve)."""
    probe = page.with_name("_overflow_probe.html")
    probe.write_text(page.read_text().replace("</body>", _OVERFLOW_JS + "</body>"))
    try:
        dom = _chromium_dom(browser, probe, profile)
    finally:
        probe.unlink()
    found = re.search(r'data-overflow="([^"]*)"', dom)
    assert found, f"{page.name}: the overflow probe did not run"
    return json.loads(html.unescape(found.group(1)))


def test_the_overflow_probe_finds_a_wide_block(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed")
    page = tmp_path / "page.html"
    for line, wide in (("x = 1", False), ("x = " + "1" * 400, True)):
        page.write_text(f"<html><body><article style='width: 600px'><pre>{line}</pre></article></body></html>")
        assert bool(_overflowing_blocks(browser, page, tmp_path / "profile")) == wide


@pytest.mark.slow
def test_every_page_renders_in_headless_chromium(built_book, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    pages = [built_book / "index.html"] + sorted((built_book / "book").glob("*.html"))
    assert len(pages) >= 10
    for page in pages:
        dom = _chromium_dom(browser, page, tmp_path / "profile")
        assert "</html>" in dom, f"{page.name}: no DOM"
        check = _PageCheck()
        check.feed(dom)
        assert check.bare_images == 0, f"{page.name}: {check.bare_images} figure(s) without a numbered caption"
        assert check.empty_first_th == 0, f"{page.name}: a table shows its index column (empty first header)"
        assert "Traceback (most recent call last)" not in dom, f"{page.name} shows a Python traceback"
        # a redirect page (index.html) shows its target's DOM: its images are relative to the target's folder
        redirect = re.search(r'http-equiv="Refresh"[^>]*url=([^"]+)"', page.read_text(), re.I)
        base = (page.parent / redirect.group(1)).parent if redirect else page.parent
        for src in re.findall(r'<img[^>]+src="([^"]+)"', dom):
            if src.startswith("data:"):
                continue
            target = (base / src.split("#")[0]).resolve()
            assert target.is_file() and target.stat().st_size > 100, f"{page.name}: broken image {src}"
        text = _page_text(dom)
        assert not _raw_latex(text), f"{page.name}: raw LaTeX in the page's text: {_raw_latex(text)}"
        assert _prose_words(dom) <= 4000, f"{page.name}: {_prose_words(dom)} words of prose (at most ~4,000)"
        if page.name == "04_language_modeling.html":  # Table 4.4's samples: escaped tokens survive as text
            assert "<unk>" in text, f"{page.name}: the samples' <unk> tokens were swallowed as HTML tags"
        if page.name == "00_intro.html":  # the answer on the first screen
            assert "TL;DR" in " ".join(text.split()[:120]), f"{page.name}: no TL;DR on the first screen"
        has_math = "math notranslate" in dom or 'class="math' in dom
        if has_math:
            assert "mjx-container" in dom, f"{page.name}: math was not rendered by MathJax"
        if not redirect:  # a redirect's target is checked as its own page
            wide = _overflowing_blocks(browser, page, tmp_path / "profile")
            assert not wide, f"{page.name}: blocks wider than the column at 1366 px: {wide}"


# the chapters that only read committed results (the others inspect the preset's model itself)
READING_CHAPTERS = ("00_intro", "04_language_modeling", "05_next_utterance", "06_summarization", "07_ablations",
                    "07b_performance", "08_xtc", "09_results")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["gpu", "paper"])
def test_the_reading_chapters_run_in_the_other_presets_without_training(preset, monkeypatch):
    """What a user with a GPU box does first: papermill with ``-p preset gpu`` (or ``paper``) and run_missing off.
    Every chapter that reads results runs through, each table and figure saying what has not run, and nothing
    trains. The cells run in one process (as papermill would run them, parameters replaced)."""
    import matplotlib
    import matplotlib.pyplot as plt

    from qlib.experiments import runner

    matplotlib.use("Agg")
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a chapter trained with run_missing=False"))
    monkeypatch.chdir(ROOT / "notebooks")
    for name in READING_CHAPTERS:
        scope = {}
        for cell in json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith("%"))
            exec(compile(src, f"{name}.ipynb", "exec"), scope)
            if "run_missing: bool" in src:  # the parameters cell: papermill's injected values
                scope.update(preset=preset, run_missing=False)
            plt.close("all")
