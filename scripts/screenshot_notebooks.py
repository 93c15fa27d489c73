"""Open course notebooks in JupyterLab in headless Chromium, run all cells, and save one screenshot per notebook.

    python scripts/screenshot_notebooks.py                            # every notebooks/NN_*.ipynb
    python scripts/screenshot_notebooks.py notebooks/00_welcome.ipynb --out docs/images/screenshots

This is the check that figures and ipywidgets really render for a learner (nbval only compares text). Each notebook is
copied into a scratch folder (so JupyterLab's autosave never touches the repository), served by a private JupyterLab
in the CI environment (CPU, fast mode), run with Run → Run All Cells, and photographed when the kernel is idle and every
cell has run. A line per notebook reports the figures, widgets and stderr/error outputs found on the page.

Needs a Chromium binary (``apt-get install chromium``) and ``pip install playwright``; the system browser is used, so
``playwright install`` is not needed. Every process started here is stopped before the script ends.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "docs" / "images" / "screenshots"
sys.path.insert(0, str(ROOT))

from dpcn_lite.course import ci_environment  # noqa: E402

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}
MAX_HEIGHT = 5000  # a taller page is cut: the screenshot shows the notebook's first 5000 pixels
QUIET_SETTINGS = {  # no news or update toasts over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

PAGE_REPORT_JS = """() => {
  const outputs = (mime) => document.querySelectorAll(
    `.jp-NotebookPanel .jp-OutputArea-output[data-mime-type="${mime}"]`).length;
  return {
    figures: outputs('image/png'),
    widgets: [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')].filter(
      (o) => o.classList.contains('jupyter-widgets') || o.querySelector('.jupyter-widgets')).length,
    stderr: outputs('application/vnd.jupyter.stderr'),
  };
}"""

ALL_CELLS_RAN_JS = """() => {
  const status = document.querySelector('#jp-main-statusbar');
  if (!status || !status.textContent.includes('Idle')) return false;
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every(p => !p.textContent.includes('*'));
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_quiet_settings(config_dir: Path) -> None:
    for relative, values in QUIET_SETTINGS.items():
        path = config_dir / "lab" / "user-settings" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def start_jupyterlab(root_dir: Path, env: dict[str, str], port: int, token: str, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "jupyter", "lab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"JupyterLab did not answer within 60 s; see {log}")


def stop(process: subprocess.Popen) -> None:
    """Stop a process this script started (by its handle): terminate, then kill if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def screenshot(page, url: str, target: Path, timeout_s: float) -> dict:
    """Open the notebook, run all cells, wait until every cell ran and the kernel is idle, save a PNG."""
    page.set_viewport_size(VIEWPORT)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#jp-main-statusbar')?.textContent.includes('Idle')",
                           timeout=60_000)  # fmt: skip
    page.keyboard.press("Control+b")  # hide the file browser: more room for the notebook
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.wait_for_timeout(1500)
    page.wait_for_function(ALL_CELLS_RAN_JS, timeout=timeout_s * 1000, polling=500)
    page.wait_for_timeout(1500)  # let figures and widgets finish drawing
    report = page.evaluate(PAGE_REPORT_JS)
    # Show the whole notebook: grow the viewport to the notebook's height, scroll to the top.
    height = page.evaluate(
        "() => { const p = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');"
        " return p ? p.scrollHeight : 0; }"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": int(min(max(height + 150, 900), MAX_HEIGHT))})
    page.evaluate("() => document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')?.scrollTo(0, 0)")
    page.wait_for_timeout(1500)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    shrink_png(target)
    return report


def shrink_png(path: Path) -> None:
    """Store the screenshot with a 256-colour palette: a third of the size, no visible loss on a notebook page."""
    from PIL import Image

    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    palette.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every course notebook)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG files")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="browser binary")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per notebook to run")
    args = parser.parse_args(argv)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        parser.error("needs the 'playwright' package: pip install playwright (the system Chromium is used)")
    if not Path(args.chromium).exists():
        parser.error(f"no Chromium at {args.chromium}: install it (apt-get install chromium) or pass --chromium")
    notebooks = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

    scratch = Path(tempfile.mkdtemp(prefix="dpcn_screens_"))
    served = scratch / "notebooks"
    served.mkdir()
    for notebook in notebooks:
        shutil.copy2(notebook, served / notebook.name)
    env = ci_environment(scratch / "env")
    write_quiet_settings(Path(env["JUPYTER_CONFIG_DIR"]))
    port, token = free_port(), secrets.token_hex(16)
    server = start_jupyterlab(served, env, port, token, scratch / "jupyterlab.log")
    failures = 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(scratch / "chromium-profile"),
                executable_path=args.chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport=VIEWPORT,
            )
            try:
                for notebook in notebooks:
                    page = browser.new_page()
                    target = args.out / f"{notebook.stem}.png"
                    start = time.perf_counter()
                    url = f"http://127.0.0.1:{port}/lab/tree/{notebook.name}?token={token}&reset"
                    try:
                        report = screenshot(page, url, target, args.timeout)
                    except Exception as error:  # report and go on with the next notebook
                        failures += 1
                        print(f"{notebook.name:<40} FAILED: {error}", flush=True)
                        continue
                    finally:
                        page.close()
                    print(
                        f"{notebook.name:<40} {time.perf_counter() - start:6.1f} s  figures {report['figures']:2d}  "
                        f"widgets {report['widgets']:2d}  stderr/errors {report['stderr']:2d}  -> {target}",
                        flush=True,
                    )
            finally:
                browser.close()
    finally:
        stop(server)
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
