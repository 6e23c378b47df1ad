"""The patient page's pre-call test in Chromium behind real shaped links: ``warn``, ``blocked``.

Chromium runs inside a network namespace whose veth is shaped by ``tc tbf`` (bench/netns.py,
launched through ``ip netns exec`` as in bench/browser_link.py), against a server bound to the
lab's address; the patient enters the demo clinic's waiting area on the project's own page and
clicks "Test my connection" (bench/precall_link.py does the driving). Within 10 s of the click:

* 700 kbit/s downlink (uplink unshaped), and 700 kbit/s both ways: ``warn`` (the server's
  padding probe finds the downlink under ``bandwidth.good_kbps``);
* 150 kbit/s downlink, and 150 kbit/s both ways: ``blocked`` (under ``bandwidth.block_kbps``).

The loopback case (``ok``) is tests/browser/test_precall.py. Needs root, network namespaces,
Playwright and Debian's chromium; otherwise skipped with the reason. About 1 minute.
Figures (``-s``): ``precall-link:`` lines; for medians over several runs:
``python -m bench.precall_link --repeats 5``.
"""

from __future__ import annotations

import os
import re

import pytest

from bench import netns

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

CASES = ["down700", "both700", "down150", "both150"]
WITHIN_S = 10.0


async def test_precall_verdicts_behind_shaped_links() -> None:
    ok, why = netns.available()
    if not ok:
        pytest.skip(f"needs network namespaces: {why}")
    pytest.importorskip("playwright.async_api")
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (run inside a namespace)")
    from bench import precall_link

    results = await precall_link.run(CASES)
    problems = []
    for case in CASES:
        (outcome,) = results[case]
        expected = precall_link.EXPECTED[case]
        if outcome["verdict"] != expected or outcome["seconds"] >= WITHIN_S:
            problems.append(f"{case}: {outcome['verdict']} after {outcome['seconds']} s "
                            f"(expected {expected} within {WITHIN_S} s): {outcome['text']}")
        assert not outcome["errors"], outcome["errors"]
        if outcome["verdict"] in ("warn", "blocked"):
            # the downlink figure is the link's measured limit, not a lower bound
            down = re.search(r"download (at least )?(\d+) kbit/s", outcome["text"])
            assert down and not down.group(1), outcome["text"]
    assert not problems, "\n".join(problems)
