"""The patch-size explorer in a real browser: JupyterLab on 127.0.0.1, driven by Debian's
Chromium through playwright (no browser download). It runs the explorer notebook, moves the
patch-size slider, checks that the token count and the image change, presses "Train at this
patch size" and checks that a run is added. Screenshots go to artifacts/ at the repository root.
CI installs Chromium with setup.sh (apt-get install chromium)."""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
NOTEBOOKS = ["4_patch_explorer_torch.ipynb", "4_patch_explorer_jax.ipynb"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the notebooks (autosave must not touch the repository),
    in quick mode; stopped by its process group at the end."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    # No "get notified about Jupyter news?" toast over the screenshots.
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, VITLIB_QUICK="1", JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"))
    log = open(tmp / "jupyter.log", "w")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group, kernels included
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n"
                            f"{(tmp / 'jupyter.log').read_text()[-3000:]}")
            try:
                req = urllib.request.Request(f"{url}/api/status",
                                             headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(req, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("jupyter lab did not answer within 60 s:\n"
                            + (tmp / "jupyter.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url, token
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test drives Debian's Chromium. Install "
                    f"it with `sudo apt-get install chromium` (bash setup.sh test does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_for(read, changed, timeout, what):
    """Poll read() until changed(value) holds; fail saying `what` otherwise."""
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        value = read()
        if changed(value):
            return value
        time.sleep(0.25)
    pytest.fail(f"{what} within {timeout} s; last value: {value!r}")


def tokens(numbers):
    """N from the numbers' first line, e.g. '... -> N = 17 tokens'."""
    m = re.search(r"-> N = (\d+) tokens", numbers.text_content() or "")
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_explorer_in_jupyterlab(lab, browser, notebook):
    url, token = lab
    fw = notebook.split("_")[-1].removesuffix(".ipynb")
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        # A workspace per notebook: the default one would reopen the other notebook's tab.
        page.goto(f"{url}/lab/workspaces/{fw}/tree/{notebook}?token={token}")
        page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
        # Wait for the kernel: Run All before it is connected opens a "Select Kernel" dialog.
        page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle")).first.wait_for(
            timeout=90_000)
        # Run > Run All Cells, as a student would.
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

        controls = page.locator(".vitlib-patch-explorer")
        # The last cell: everything above has run. "attached", not "visible": JupyterLab
        # skips rendering cells outside the window until they are scrolled to.
        controls.wait_for(state="attached", timeout=150_000)
        cell = page.locator(".jp-Cell", has=controls)
        cell.scroll_into_view_if_needed()
        numbers = cell.locator(".jp-RenderedText pre", has_text="tokens").first
        image = cell.locator(".jp-RenderedImage img").first
        status = controls.locator(".widget-label", has_text="run(s)").first
        numbers.wait_for(timeout=30_000)
        assert tokens(numbers) == 17  # the default: 28x28, patch 7
        src_before = image.get_attribute("src")
        cell.screenshot(path=ARTIFACTS / f"explorer_{fw}_before.png")

        # Patch size 7 -> 4 with the keyboard on the focused slider handle.
        slider = controls.locator(".widget-hslider", has_text="patch size")
        slider.locator(".noUi-handle").first.focus()
        page.keyboard.press("ArrowLeft")
        n = wait_for(lambda: tokens(numbers), lambda v: v not in (None, 17), 30,
                     "the token count did not change after moving the patch-size slider")
        assert n == 50  # patch 4: 7x7 patches + <cls>
        wait_for(lambda: image.get_attribute("src"), lambda v: v != src_before, 10,
                 "the image did not change after moving the patch-size slider")
        cell.screenshot(path=ARTIFACTS / f"explorer_{fw}_after_slider.png")

        # Train at patch 4 (quick mode: a few seconds on a small subset).
        runs_before = int(re.search(r"(\d+) run\(s\)", status.text_content()).group(1))
        button = controls.locator("button", has_text="Train at this patch size")
        button.click()
        wait_for(button.is_disabled, bool, 10, "the Train button was not disabled while training")
        wait_for(lambda: status.text_content(), lambda v: f"{runs_before + 1} run(s)" in v, 120,
                 "no run was added after pressing 'Train at this patch size'")
        assert not button.is_disabled()  # re-enabled before the status shows the result
        rows = re.findall(r"^\s+28\s+4\s+50\s+0\.\d{3}$", numbers.text_content(), re.M)
        assert len(rows) == 2  # the measured P=4 run of the notebook and the new one
        cell.screenshot(path=ARTIFACTS / f"explorer_{fw}_after_train.png")
    except Exception:
        page.screenshot(path=ARTIFACTS / f"explorer_{fw}_failure.png", full_page=True)
        raise
    finally:
        page.close()
