"""The backtest report: one offline HTML file whose charts render in a real browser."""

from __future__ import annotations

import re

import pytest

from app.backtest_report import monthly_returns, render_report
from app.inputs import load_inputs
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings
from tests.data_paths import SHARED_DATA
from tests.serve.browser import chromium_path

FILES = [str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"), str(SHARED_DATA / "candles" / "ETC_BTC-5m.feather")]
CHARTS = ("chart-equity", "chart-drawdown", "chart-monthly", "chart-trades-0", "chart-trades-1", "chart-returns")


@pytest.fixture(scope="module")
def result():
    return run_backtest(load_inputs(FILES, None, None), "sma_cross", settings=BacktestSettings(mode="long-short"))


def test_report_is_self_contained_and_deterministic(result) -> None:
    page = render_report(result)
    for anchor in (*CHARTS, "metrics", "settings", "markets"):
        assert f"id='{anchor}'" in page, anchor
    assert page.count("<svg") >= len(CHARTS)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls  # namespaces only
    assert "<script" not in page
    assert render_report(result) == page


def test_monthly_returns_compound_to_the_total() -> None:
    import numpy as np
    day = 86_400 * 10**9
    ts = np.arange(0, 90 * day, day) + np.datetime64("2021-01-01", "ns").astype(np.int64)
    equity = 100 * 1.01 ** np.arange(90)
    years, table = monthly_returns(ts, equity)
    assert years == [2021]
    total = np.prod(1 + table[np.isfinite(table)]) - 1
    assert total == pytest.approx(equity[-1] / equity[0] - 1, rel=1e-12)


def test_a_run_without_trades_still_renders(tmp_path) -> None:
    toml = tmp_path / "never.toml"
    toml.write_text('name = "never"\nindicators = ["sma:10"]\n[[rule]]\nname = "never"\nside = "buy"\n'
                    'when = ["sma_10 < 0"]\n')
    quiet = run_backtest(load_inputs(FILES[:1], None, None), str(toml))
    page = render_report(quiet)
    assert "id='no-trades'" in page and "id='chart-equity'" in page


def test_report_charts_render_in_chromium(result, tmp_path) -> None:
    chromium = chromium_path()
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(render_report(result), encoding="utf-8")
    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            for chart in CHARTS:
                box = page.evaluate(f"""() => {{
                    const svg = document.querySelector('#{chart} svg');
                    if (!svg) return null;
                    const r = svg.getBoundingClientRect();
                    return {{w: r.width, h: r.height, paths: svg.querySelectorAll('path').length}};
                }}""")
                assert box and box["w"] > 300 and box["h"] > 50 and box["paths"] > 5, (chart, box)
            rows = page.evaluate("() => document.querySelectorAll('#metrics tr').length")
            assert rows > 10
            assert page.evaluate("() => document.querySelectorAll('#markets tr').length") == 3
            page.screenshot(path=str(shot), full_page=True)
            assert not errors
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
