"""The patient page's pre-call test in Chromium, on loopback and behind shaped links.

    python -m bench.precall_link                           # every case once
    python -m bench.precall_link --repeats 5               # five runs each, with medians
    python -m bench.precall_link --cases down700,both150   # some of them

A patient enters the waiting area of the demo clinic on the project's own page (``/c/demo``) and
clicks "Test my connection"; the verdict (``data-verdict`` of ``#precall-result``), the time from
the click to it, and the figures in its text are recorded. Cases (bench/netns.py; needs root):

* ``loopback``: Chromium in the root namespace, unshaped;
* ``down700`` / ``down150``: Chromium in a namespace whose downlink is ``tc tbf`` 700 / 150
  kbit/s (uplink unshaped);
* ``both700`` / ``both150``: the same rate both ways;
* ``up700``: the uplink only.

The expected verdicts (``EXPECTED``) are ``ok``, ``warn`` and ``blocked``. Everything the
patient's page does runs through the shaped link: its waiting-area connection (which publishes
its camera) and the test's own. Prints one line per run and a summary per case: the verdicts
seen and the median time to the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import netns
from bench.browser_call import CHROMIUM_ARGS, SECRET
from bench.chromium_ns import chromium_in, lab_server

# case -> (downlink kbit/s, uplink kbit/s); None: unshaped (the root namespace for loopback)
CASES: dict[str, tuple[float | None, float | None]] = {
    "loopback": (None, None),
    "down700": (700, None),
    "down150": (150, None),
    "both700": (700, 700),
    "both150": (150, 150),
    "up700": (None, 700),
}
EXPECTED = {"loopback": "ok", "down700": "warn", "down150": "blocked", "both700": "warn",
            "both150": "blocked", "up700": "warn"}
PATIENT_NAME = "Ada Precallpatient"


async def run_case(browser: Any, url: str) -> dict[str, Any]:
    """One pre-call test on the patient page: verdict, seconds from the click, the text."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    try:
        page = await context.new_page()
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{url}/c/demo")
        await page.fill("#name", PATIENT_NAME)
        await page.click("#enter")
        await page.wait_for_function(
            "() => window.sfuCall && window.sfuCall.pc && window.sfuCall.pc.connectionState === 'connected'",
            timeout=30_000)
        button = page.locator("#precall-start")
        await page.wait_for_function("() => !document.querySelector('#precall-start').disabled",
                                     timeout=15_000)
        clicked = time.monotonic()
        await button.click()
        await page.wait_for_function(
            "() => document.querySelector('#precall-result').dataset.verdict", timeout=30_000)
        took = time.monotonic() - clicked
        result = page.locator("#precall-result")
        verdict = await result.get_attribute("data-verdict")
        text = await result.text_content() or ""
        return {"verdict": verdict, "seconds": round(took, 2), "text": text, "errors": errors}
    finally:
        await context.close()


def figures(text: str) -> str:
    found = re.findall(r"(upload|download) (at least )?(\d+) kbit/s", text)
    return " ".join(f"{d[0][0]}{'>=' if a else '='}{v}" for d, a, v in found)


async def run(cases: list[str], repeats: int = 1, *, verbose: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Every case ``repeats`` times; the results per case (see :func:`run_case`)."""
    from playwright.async_api import async_playwright

    ok, why = netns.available()
    if not ok:
        raise netns.NetnsError(f"needs network namespaces: {why}")
    results: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    with netns.Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        address = lab.server_address
        server, url = await lab_server(address, SECRET)
        link = lab.add()
        args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={url}"]
        try:
            async with async_playwright() as p:
                host = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                               args=args)
                shaped = await p.chromium.launch(executable_path=chromium_in(link.ns, Path(tmp)),
                                                 headless=True, args=args)
                try:
                    for _ in range(repeats):
                        for case in cases:
                            down, up = CASES[case]
                            link.set_downlink(down)
                            link.set_uplink(up)
                            browser = host if case == "loopback" else shaped
                            outcome = await run_case(browser, url)
                            results[case].append(outcome)
                            if verbose:
                                print(f"precall-link: {case:9s} verdict {outcome['verdict']:8s} "
                                      f"after {outcome['seconds']:5.2f} s  {figures(outcome['text'])}",
                                      flush=True)
                finally:
                    await host.close()
                    await shaped.close()
        finally:
            await server.close()
    if verbose:
        for case, runs in results.items():
            verdicts = [r["verdict"] for r in runs]
            median = statistics.median(r["seconds"] for r in runs) if runs else float("nan")
            print(f"precall-link summary: {case:9s} expected {EXPECTED[case]:8s} got {verdicts} "
                  f"median {median:.2f} s (max {max(r['seconds'] for r in runs):.2f} s)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.repeats < 1:
        sys.exit(f"unknown cases {unknown}" if unknown else "--repeats must be at least 1")
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    asyncio.run(run(cases, args.repeats))


if __name__ == "__main__":
    main()
