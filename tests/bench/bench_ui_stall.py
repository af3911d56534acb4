"""Does the UI stay responsive during a big first sync? (DESIGN.md sections 1 and 5: "it
reports progress and never blocks the UI".)

    .venv/bin/python tests/bench/bench_ui_stall.py [--patients 100000] [--tick-ms 10] [--paged]

The server declares FHIR Bulk Data `$export`, so the first sync is a bulk load (NDJSON files
streamed into the store's bulk-load path, then the one index build); `--paged` switches the
server's `$export` off to time the paged first load instead. `bulk` in the JSON says which ran.

The reference central record runs in its own process (in this one it would share our GIL and
its JSON work would count as our stall), seeded with N generated patients; the cohort and the
seeded server store are cached under `bench-data/ui-stall-N/` (the sync only reads, so the
store can be reused). This process is the tablet: a freshly enrolled SQLCipher profile, a
QApplication (offscreen), the day theme, the real `SyncPanel` shown at 1280x800 and its real
`SyncController`, which runs the whole initial sync on its QThread while a QTimer on the GUI
thread ticks every `--tick-ms` and records the gaps between ticks.

Figures: sync time, the longest gap between ticks (the worst stall an officer could feel:
the target is never more than 100 ms), the p99 gap, the number of ticks and of progress
signals the panel received. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TABLET = ("tablet-1", "tablet-secret-0123456789")
ADMIN = ("admin-1", "admin-secret-0123456789")
TARGET_MS = 100.0
SEED = 7

_SERVE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sync.reference import ReferenceConfig, serve
config = ReferenceConfig(data_dir=Path(sys.argv[2]), seed_dir=Path(sys.argv[3]),
                         clients=[(sys.argv[4], sys.argv[5])],
                         admin_clients=[(sys.argv[6], sys.argv[7])])
serve(config, lambda url: print(url, flush=True))
"""


def cohort(work: Path, patients: int) -> Path:
    """The generated cohort as NDJSON, made once per N."""
    from app.synthetic import generate_cohort

    out = work / "cohort"
    if not (out / "Patient.ndjson").exists():
        started = time.perf_counter()
        generate_cohort(patients, SEED, out)
        print(f"generated {patients:,} patients in {time.perf_counter() - started:.1f} s")
    return out


def start_server(work: Path, seed_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """The reference server in a child process; returns it and its base URL once it listens."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SERVE,
            str(ROOT),
            str(work / "central"),
            str(seed_dir),
            *TABLET,
            *ADMIN,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("http"):
        child.kill()
        raise SystemExit("the reference server did not start")
    print(f"reference server ready in {time.perf_counter() - started:.1f} s")
    return child, url


def switch_off_export(base_url: str) -> None:
    """PATCH the running server's settings as its admin client (a server without $export)."""
    import requests

    root = base_url.rsplit("/fhir", 1)[0]
    token = requests.post(
        f"{root}/oauth/token", data={"grant_type": "client_credentials"}, auth=ADMIN, timeout=30
    ).json()["access_token"]
    resp = requests.patch(
        f"{root}/admin/settings",
        json={"bulk_export": False},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    resp.raise_for_status()


def measure(profile_dir: Path, base_url: str, tick_ms: int) -> dict[str, Any]:
    """Enrol, build the panel, sync with the GUI timer ticking; return the figures."""
    import keyring
    from PySide6.QtCore import QTimer

    from app.security import KdfParams, ServerSettings, memory_keyring, store_client_secret
    from app.services.session import enrol
    from app.ui import theme
    from app.ui.app import create_application
    from app.ui.ops import Runner
    from app.ui.sync_panel import SyncPanel
    from app.ui.sync_worker import SyncController
    from tests.conftest import TEST_LOCKOUT

    keyring.set_keyring(memory_keyring())  # outside the product; see tests/conftest.py
    session = enrol(
        profile_dir,
        "pc101",
        "246810",
        kdf=KdfParams(time_cost=1, memory_kib=8192, parallelism=1),
        lockout=TEST_LOCKOUT,
    )
    session.profile.set_server(
        ServerSettings(base_url=base_url, client_id=TABLET[0], token_url=None)
    )
    store_client_secret(session.profile.profile_id, TABLET[1])

    app = create_application()
    theme.apply(app, theme.DAY)
    runner = Runner(app)
    controller = SyncController(
        session,
        runner,
        auto_sync_minutes=0,
        probe_interval_s=0,
        sync_on_reconnect=False,
        use_os_network_info=False,
    )
    panel = SyncPanel(session, runner, controller)
    panel.resize(1280, 800)
    panel.show()
    runner.wait_until_idle(10_000)

    ticks: list[float] = []
    shown: list[str] = []  # the phase on screen at each tick, to say where the stalls were
    progress_signals = [0]
    outcome: dict[str, Any] = {}
    timer = QTimer()
    timer.setInterval(tick_ms)
    timer.timeout.connect(
        lambda: (ticks.append(time.perf_counter()), shown.append(panel.phase.text()))
    )
    controller.progress_changed.connect(
        lambda *_: progress_signals.__setitem__(0, progress_signals[0] + 1)
    )

    def finished(report: Any) -> None:
        outcome["report"] = report
        QTimer.singleShot(200, app.quit)  # let the panel's reload after a sync land too

    def failed(message: str) -> None:
        outcome["error"] = message
        app.quit()

    controller.sync_finished.connect(finished)
    controller.sync_failed.connect(failed)
    timer.start()
    started = time.perf_counter()
    controller.start_sync()
    app.exec()
    sync_s = time.perf_counter() - started
    timer.stop()
    controller.stop()
    runner.wait_until_idle(10_000)
    if "error" in outcome:
        raise SystemExit(f"sync failed: {outcome['error']}")
    report = outcome["report"]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(ticks)]
    worst = sorted(range(len(gaps)), key=lambda i: -gaps[i])[:5]
    where = [f"{gaps[i]:.0f} ms at {ticks[i] - started:.1f} s ({shown[i]})" for i in worst]
    gaps.sort()
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] if gaps else 0.0
    figures = {
        "patients": report.pulled_by_type.get("Patient", 0),
        "pulled": report.pulled,
        "bulk": report.bulk_export,
        "sync_s": round(sync_s, 1),
        "max_stall_ms": round(gaps[-1], 1) if gaps else 0.0,
        "p99_gap_ms": round(p99, 1),
        "median_gap_ms": round(statistics.median(gaps), 1) if gaps else 0.0,
        "ticks": len(ticks),
        "gaps_over_100ms": sum(1 for g in gaps if g > TARGET_MS),
        "progress_signals": progress_signals[0],
        "worst": where,
    }
    panel.close()
    session.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--tick-ms", type=int, default=10)
    parser.add_argument("--paged", action="store_true", help="the server without $export")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["KERBSIDE_ALLOW_INSECURE_KEYRING"] = "1"

    work = ROOT / "bench-data" / f"ui-stall-{args.patients}"
    work.mkdir(parents=True, exist_ok=True)
    seed_dir = cohort(work, args.patients)
    server, base_url = start_server(work, seed_dir)
    try:
        if args.paged:
            switch_off_export(base_url)
        with tempfile.TemporaryDirectory(prefix="kerbside-stall-") as tmp:
            figures = measure(Path(tmp) / "profile", base_url, args.tick_ms)
    finally:
        server.terminate()
        server.wait(30)
    print(
        f"initial sync ({'bulk $export' if figures['bulk'] else 'paged'}) of "
        f"{figures['patients']:,} patients ({figures['pulled']:,} resources) "
        f"in {figures['sync_s']} s"
    )
    print(
        f"GUI timer every {args.tick_ms} ms: {figures['ticks']:,} ticks, longest gap "
        f"{figures['max_stall_ms']} ms, p99 {figures['p99_gap_ms']} ms, median "
        f"{figures['median_gap_ms']} ms, {figures['gaps_over_100ms']} gaps over "
        f"{TARGET_MS:.0f} ms; {figures['progress_signals']} progress signals"
    )
    verdict = "OK" if figures["max_stall_ms"] <= TARGET_MS else "OVER TARGET"
    print(f"target: no gap over {TARGET_MS:.0f} ms: {verdict}")
    print("worst gaps: " + "; ".join(figures.pop("worst")))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
