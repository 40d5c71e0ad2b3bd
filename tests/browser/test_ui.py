"""Real-browser checks: what a data scientist sees in the MLflow UI and in JupyterLab.

Playwright drives Debian's Chromium (/usr/bin/chromium; `.ci/install-browser.sh` installs it;
Playwright's own browser download is never used) against the session's test stack. Every check
is on what is rendered: texts, a metric chart's SVG, an <img> that decoded, a cell's output.

Screenshots go to a directory under pytest's tmp dir (its path is printed), and are copied to
$WORKBENCH_SCREENSHOTS_DIR when that is set (docs/screenshots/ was made that way). A failing test
also leaves a screenshot of the page it failed on there.

Inner loop: WORKBENCH_TEST_PROJECT=wbdev WORKBENCH_TEST_KEEP=1 pytest tests/browser
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import HOSTILE_SECRETS
from utils.stack import http_session

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent: the browser checks drive Debian's chromium package "
        "(install it as root with .ci/install-browser.sh)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# The flags this machine's closed network needs: without the background-networking ones Chromium
# keeps trying (and failing) to reach Google's hosts. Playwright gives every launch() a new,
# empty user-data-dir of its own (and removes it at close), so no profile is ever reused.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000  # the bound on every single page wait
VIEWPORT = {"width": 1440, "height": 900}
ADMIN = {"username": "admin", "password": HOSTILE_SECRETS["MLFLOW_ADMIN_PASSWORD"]}
TOKEN = HOSTILE_SECRETS["JUPYTER_TOKEN"]
LAB_ROOT = "/home/jovyan/work"  # jupyter's ServerApp.root_dir

expect.set_options(timeout=WAIT_MS)

# A training run as a notebook would log it: params, a metric over steps, a matplotlib figure
# and a scikit-learn model (in MLflow 3 a LoggedModel, with its own artifacts).
LOG_RUN = r"""
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

LOSS = [0.92, 0.61, 0.47, 0.39, 0.35, 0.33]
mlflow.set_experiment({experiment!r})
X, y = load_iris(return_X_y=True, as_frame=True)
with mlflow.start_run(run_name={run_name!r}) as run:
    mlflow.log_params({{"C": 0.5, "max_iter": 300, "solver": "lbfgs"}})
    for step, value in enumerate(LOSS):
        mlflow.log_metric("loss", value, step=step)
        mlflow.log_metric("accuracy", 1 - value / 2, step=step)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot(range(len(LOSS)), LOSS, marker="o")
    ax.set(title="training loss", xlabel="step", ylabel="loss")
    mlflow.log_figure(fig, "plots/loss.png")
    model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(2))
print(json.dumps({{"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "model_id": info.model_id}}))
"""


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def browser() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def screenshot(screenshot_dir):
    """screenshot(page, name): a PNG in the test's directory, copied to $WORKBENCH_SCREENSHOTS_DIR."""

    def take(page: Page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=path, timeout=WAIT_MS)
        print(f"screenshot: {path}")
        published = os.environ.get("WORKBENCH_SCREENSHOTS_DIR")
        if published:
            Path(published).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(published) / path.name)
        return path

    return take


def _new_page(browser: Browser, request, screenshot_dir: Path, **context_options):
    context = browser.new_context(viewport=VIEWPORT, **context_options)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        path = screenshot_dir / f"FAILED-{request.node.name}.png"
        try:
            page.screenshot(path=path, timeout=WAIT_MS)
            print(f"screenshot of the failing page: {path} ({page.url})")
        except Exception as error:  # noqa: BLE001 (the page may be what broke)
            print(f"no screenshot of the failing page: {error}")
    context.close()


@pytest.fixture
def mlflow_page(browser, request, screenshot_dir):
    """A page logged in to the MLflow UI with basic auth (the browser's credentials prompt)."""
    yield from _new_page(browser, request, screenshot_dir, http_credentials=ADMIN)


@pytest.fixture
def lab_page(browser, request, screenshot_dir):
    yield from _new_page(browser, request, screenshot_dir)


@pytest.fixture(scope="module")
def logged_run(stack) -> dict:
    suffix = uuid.uuid4().hex[:6]
    names = {"experiment": f"browser-check-{suffix}", "run_name": f"browser-run-{suffix}"}
    out = stack.python("jupyter", LOG_RUN.format(**names))
    return {**names, **json.loads(out.strip().splitlines()[-1])}


# ---------------------------------------------------------------------------------- MLflow UI


def _dismiss_mlflow_extras(page: Page) -> None:
    """MLflow 3 opens its Assistant side panel on first visit; close it whenever it shows.

    A locator handler runs before any action or assertion that finds it visible (and then waits
    for it to go), so it also catches a panel that opens late, with no polling of our own.
    """
    page.add_locator_handler(
        page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]'), lambda close: close.click()
    )


def test_mlflow_ui_with_a_wrong_password_shows_nothing(stack, browser):
    wrong = {"username": "admin", "password": "not-" + ADMIN["password"]}
    context = browser.new_context(viewport=VIEWPORT, http_credentials=wrong)
    try:
        page = context.new_page()
        response = page.goto(stack.url("mlflow-server", 5000) + "/", timeout=WAIT_MS)
        assert response is not None and response.status == 401
        expect(page.get_by_text("You are not authenticated")).to_be_visible()
        expect(page.get_by_text("Welcome to MLflow")).to_have_count(0)
    finally:
        context.close()


def test_mlflow_ui_shows_the_run_its_chart_and_its_artifacts(stack, mlflow_page, logged_run, screenshot):
    page, run_id = mlflow_page, logged_run["run_id"]
    _dismiss_mlflow_extras(page)
    page.goto(stack.url("mlflow-server", 5000) + "/")

    # Logged in: the UI, not a 401, with the admin's name in the sidebar.
    expect(page.get_by_role("heading", name="Welcome to MLflow")).to_be_visible()
    expect(page.get_by_text("admin", exact=True).first).to_be_visible()
    # The GenAI / classic-ML chooser: training runs are "Model training".
    page.get_by_text("Model training", exact=True).click()

    # The experiment list, searched for this test's experiment.
    page.get_by_role("link", name="Experiments", exact=True).click()
    search = page.get_by_test_id("search-experiment-input")
    expect(search).to_be_visible()
    search.fill(logged_run["experiment"])
    search.press("Enter")
    page.get_by_role("link", name=logged_run["experiment"], exact=True).click()

    # The experiment's runs, then the run.
    page.get_by_role("link", name=logged_run["run_name"], exact=True).click()
    expect(page).to_have_url(
        f"{page.url.split('#')[0]}#/experiments/{logged_run['experiment_id']}/runs/{run_id}"
    )
    expect(page.get_by_role("heading", name=logged_run["run_name"])).to_be_visible()
    expect(page.get_by_text(run_id, exact=True)).to_be_visible()
    for param, value in [("C", "0.5"), ("max_iter", "300"), ("solver", "lbfgs")]:
        row = page.get_by_role("row").filter(has=page.get_by_text(param, exact=True))
        expect(row.get_by_text(value, exact=True).first).to_be_visible()

    # Its metric charts: one per metric, each an SVG plot with the run's line in the legend.
    page.get_by_role("tab", name="Model metrics").click()
    for metric in ("loss", "accuracy"):
        # The card: the nearest element around the metric's heading that holds a plotly chart.
        card = page.get_by_role("heading", name=metric, exact=True).locator(
            "xpath=ancestor::div[.//div[contains(concat(' ', @class, ' '), ' js-plotly-plot ')]][1]"
        )
        expect(card.locator(".js-plotly-plot svg.main-svg").first).to_be_visible()
        expect(card.locator(".js-plotly-plot path.js-line").first).to_be_visible()
        expect(card.get_by_text(f"{logged_run['run_name']} ({metric})")).to_be_visible()
    expect(page.get_by_text("Step", exact=True).first).to_be_visible()
    screenshot(page, "mlflow-run")

    # Its artifacts: the matplotlib figure, shown as an image that decoded.
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("loss.png", exact=True).click()
    image = page.get_by_role("img", name="plots/loss.png")
    expect(image).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=WAIT_MS
    )
    assert image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [500, 350]
    screenshot(page, "mlflow-artifact-image")

    # The model (in MLflow 3 a logged model with its own page): its MLmodel file, as text.
    page.get_by_role("tab", name="Overview").click()
    expect(page.get_by_text("Logged models (1)")).to_be_visible()
    # Its row in the "Logged models" table (the metric table's links open a new tab instead).
    model_href = f"#/experiments/{logged_run['experiment_id']}/models/{logged_run['model_id']}"
    model_link = page.locator(f'a[href="{model_href}"]:not([target="_blank"])')
    expect(model_link).to_have_text("model")
    model_link.click()
    expect(page.get_by_text(logged_run["model_id"], exact=True)).to_be_visible()
    page.get_by_role("link", name="Artifacts", exact=True).click()
    page.get_by_text("MLmodel", exact=True).click()
    for line in ("flavors:", "sklearn_version:", f"model_id: {logged_run['model_id']}", f"run_id: {run_id}"):
        expect(page.get_by_text(line).first).to_be_visible()
    screenshot(page, "mlflow-model-file")


# ---------------------------------------------------------------------------------- JupyterLab

NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    },
    "cells": [
        {
            "cell_type": "markdown",
            "id": "intro",
            "metadata": {},
            "source": "A browser check of the workbench: this cell's neighbour must print 42.",
        },
        {
            "cell_type": "code",
            "id": "answer",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": "print(6 * 7)",
        },
    ],
}


@pytest.fixture
def lab_notebook(stack):
    """A notebook the test owns at JupyterLab's root; removed with its kernel and workspace."""
    url = stack.url("jupyter", 8888)
    http = http_session()
    http.headers["Authorization"] = f"token {TOKEN}"
    name = f"browser-check-{uuid.uuid4().hex[:6]}"
    path = f"{name}.ipynb"
    # JupyterLab makes a hidden .ipynb_checkpoints/ (the contents API does not show it) on open.
    checkpoints = f"{LAB_ROOT}/.ipynb_checkpoints"
    had_checkpoints = stack.exec("jupyter", "test", "-d", checkpoints, check=False).returncode == 0
    created = http.put(
        f"{url}/api/contents/{quote(path)}",
        timeout=10,
        json={"type": "notebook", "format": "json", "content": NOTEBOOK},
    )
    assert created.status_code == 201, created.text
    try:
        yield {"url": url, "path": path, "workspace": name}
    finally:
        for session in http.get(f"{url}/api/sessions", timeout=10).json():
            if session.get("path") == path:
                http.delete(f"{url}/api/sessions/{session['id']}", timeout=30)
        http.delete(f"{url}/lab/api/workspaces/{name}", timeout=10)  # 404 if never saved
        assert http.delete(f"{url}/api/contents/{quote(path)}", timeout=10).status_code == 204
        if not had_checkpoints:  # leave the root as it was (rmdir: only if empty)
            stack.exec("jupyter", "rmdir", checkpoints, check=False)


def test_jupyterlab_without_token_shows_the_login_form(stack, lab_page):
    lab_page.goto(stack.url("jupyter", 8888) + "/lab")
    expect(lab_page).to_have_url(re.compile(r"/login"))
    expect(lab_page.locator("#password_input")).to_be_visible()  # "Password or token"
    expect(lab_page.locator(".jp-NotebookPanel, .jp-DirListing")).to_have_count(0)


def test_jupyterlab_opens_a_notebook_and_runs_a_cell(lab_page, lab_notebook, screenshot):
    page, path = lab_page, lab_notebook["path"]
    # JupyterLab 4's announcements plugin asks "Would you like to get notified about official
    # Jupyter news?" in a toast once the layout is restored and this answer is in (the old image
    # showed it ~0.5 s after it, ~2 s after the page opened); jupyter/overrides.json answers Never.
    announcements = "/api/config/jupyterlabapputilsextensionannouncements"
    with page.expect_response(lambda response: announcements in response.url):
        # A workspace of the test's own, so the user's default layout never lists this notebook.
        page.goto(f"{lab_notebook['url']}/lab/workspaces/{lab_notebook['workspace']}?token={TOKEN}")

    # Logged in with the token: the file browser lists the notebook; open it from there.
    entry = page.locator(f'.jp-DirListing-item[title^="Name: {path}"]')
    expect(entry).to_be_visible()
    entry.dblclick()
    panel = page.locator(".jp-NotebookPanel")
    tab = page.get_by_role("tab", name=path)
    expect(tab).to_be_visible()
    expect(
        panel.locator(".jp-MarkdownOutput").get_by_text("this cell's neighbour must print 42")
    ).to_be_visible()  # the markdown cell, rendered

    # Run the code cell with Shift+Enter, as a user does, once the kernel has started (a cell
    # run while the kernel is still connecting can be dropped on a slow machine).
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    cell = panel.locator(".jp-CodeCell").first
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-OutputArea-output")
    expect(output).to_have_text("42")
    expect(cell.locator(".jp-InputPrompt")).to_contain_text("[1]")
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    # Seconds after the announcements plugin had all it waits for: nothing asked to reach the
    # internet, neither as a toast nor in the notification center (the status bar's bell).
    expect(page.get_by_text("get notified about official Jupyter news")).to_have_count(0)
    expect(page.locator(".jp-toastContainer .Toastify__toast")).to_have_count(0)
    bell = page.locator(".jp-Notification-Status")
    expect(bell.locator("[title]").first).to_have_attribute("title", "No notifications")
    expect(bell.locator(".jp-Notification-Status-Text")).to_have_text("0")
    screenshot(page, "jupyterlab")
