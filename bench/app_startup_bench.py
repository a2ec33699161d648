"""App mode's start-up: ``cachectl --app IMPORT config`` against the app's own start-up.

App mode imports the app and runs its factory, as ``flask --app`` does; what cachectl adds
on top (its own imports, watching ``init_app``, naming the caches by reading the app's
modules as stored, printing) should be small next to that. Measured on a large real app:
Apache Superset at the release the real-app lane pins (thousands of modules loaded), in
the environment ``scripts/real_apps.sh`` builds (``.venv-realapp-superset``, cachectl
installed beside Superset without moving a pin).

In alternating rounds (each round runs every contender once, in a rotated order, so a
noisy neighbour hits them alike), the wall time of each whole process:

- the baseline: ``python -c "from superset.app import create_app; create_app()"``;
- the baseline again, ending as cachectl's console script ends (``gc.freeze()``, which skips
  the interpreter's last garbage collection over the app's heap: with thousands of modules
  loaded it is a good part of a second);
- ``cachectl --app 'superset.app:create_app()' config`` (no server is asked: ``config``
  reads settings only).

It prints the medians, their spread and the ratios docs/performance.md quotes: against the app's
own start-up (goal: at most 1.10), and against the start-up ending as cachectl does (what
cachectl's own imports and work add).

    bash scripts/real_apps.sh                  # once: builds the app's environment
    python bench/app_startup_bench.py          # 20 rounds
    python bench/app_startup_bench.py --rounds 30 --venv .venv-realapp-superset
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "superset.app:create_app()"
PYTHONPATH = ROOT / "tests" / "real_apps" / "superset" / "pythonpath"


def contenders(venv: Path) -> dict[str, list[str]]:
    module, _, factory = APP.partition(":")
    startup = f"from {module} import {factory.rstrip('()')}; {factory}"
    python = str(venv / "bin" / "python")
    return {
        "the app's own start-up": [python, "-c", startup],
        # The same, ending as cachectl's console script ends (gc.freeze(): no last garbage
        # collection over the app's heap). Against it, what remains is what cachectl's
        # own imports and work add.
        "... + gc.freeze()": [python, "-c", startup + "; import gc; gc.freeze()"],
        "cachectl --app ... config": [str(venv / "bin" / "cachectl"), "--app", APP, "config"],
    }


def timed(command: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds (at least 10)")
    parser.add_argument(
        "--venv", type=Path, default=ROOT / ".venv-realapp-superset", help="the app's venv"
    )
    options = parser.parse_args()
    rounds = max(options.rounds, 10)
    venv = options.venv.resolve()
    template = venv / "superset-template.db"
    if not (venv / "bin" / "cachectl").exists() or not template.exists():
        raise SystemExit(f"no prepared Superset environment at {venv}: bash scripts/real_apps.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHECTL_", "FLASK_"))}
    # As installed, modules load from compiled bytecode; the warm-up run writes it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPATH=str(PYTHONPATH),
        REALAPP_SUPERSET_DB=str(template),
        # Nothing is asked of a server: a closed port stands for Redis.
        REALAPP_REDIS_URL="redis://127.0.0.1:9/0",
    )
    commands = contenders(venv)
    names = list(commands)
    times: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:  # warm-up: bytecode, the page cache
            timed(commands[name], env, scratch)
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                times[name].append(timed(commands[name], env, scratch))
    print(f"{rounds} alternating rounds, {venv.name}; wall time of a whole process:")
    for name in names:
        values = sorted(times[name])
        quartiles = statistics.quantiles(values, n=4)
        print(
            f"  {name:28} median {statistics.median(values):6.3f} s"
            f"  (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f} s)"
        )
    ours = statistics.median(times[names[2]])
    ratio = ours / statistics.median(times[names[0]])
    frozen = ours / statistics.median(times[names[1]])
    print(f"cachectl --app config / the app's own start-up: {ratio:.2f}x (goal: at most 1.10)")
    print(f"cachectl --app config / the start-up ending as cachectl does: {frozen:.2f}x")


if __name__ == "__main__":
    main()
