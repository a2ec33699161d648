"""Print how the corpus fares: inputs tried by command and by outcome (exit code).

``python -m tests.fuzz.report`` starts its own private redis-server and memcached
(never the machine's), runs every corpus case once in plain mode, and prints the
tables docs/reliability.md quotes, plus the cases that break the
contract. It exists so the published numbers come from the same corpus the tests
run, not from a hand count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.fuzz.corpus import CASES, Outcome, Targets, run_many, shown, violations
from tests.servers import free_port, start_memcached, start_redis

OUTCOMES = ("0", "1", "2", "3", "4", "other")


def outcome_label(outcome: Outcome) -> str:
    code = outcome.returncode
    return str(code) if code is not None and str(code) in OUTCOMES else "other"


def table(title: str, rows: dict[str, Counter[str]]) -> list[str]:
    """A Markdown table: one row per group, one column per exit code, and the totals."""
    header = f"| {title} | " + " | ".join(f"exit {o}" for o in OUTCOMES) + " | total |"
    lines = [header, "| --- " * (len(OUTCOMES) + 2) + "|"]
    total: Counter[str] = Counter()
    for name in sorted(rows):
        counts = rows[name]
        total.update(counts)
        cells = " | ".join(str(counts.get(o, 0)) for o in OUTCOMES)
        lines.append(f"| `{name}` | {cells} | {sum(counts.values())} |")
    cells = " | ".join(str(total.get(o, 0)) for o in OUTCOMES)
    lines.append(f"| **total** | {cells} | {sum(total.values())} |")
    return lines


#: The threat checklist's classes (shared/threat-checklist.md), by a case id's first word;
#: any other case tries the names and arguments a command line brings.
THREAT_CLASSES = {
    "files": "the filesystem: links, FIFOs, owners, modes, full disk",
    "cfgfile": "where settings come from: files, URLs, types, trust",
    "setting": "where settings come from: files, URLs, types, trust",
    "url": "where settings come from: files, URLs, types, trust",
    "dir": "where settings come from: files, URLs, types, trust",
    "config": "where settings come from: files, URLs, types, trust",
    "audit": "where settings come from: files, URLs, types, trust",
    "timeout": "where settings come from: files, URLs, types, trust",
    "secret": "secrets of every type, never shown",
    "app": "the app's process: imports, factories, exits",
    "res": "values and servers: size, compression, slow replies, no scripts",
    "usage": "usage errors: misspelled commands, misplaced options",
    "parse": "lines of a batch or group, split as a shell splits them",
    "control": "controls that must succeed",
}
OTHER_CLASS = "names and arguments from the outside world"


def threat_class(case_id: str) -> str:
    return THREAT_CLASSES.get(case_id.split("-")[0], OTHER_CLASS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="list contract violations")
    options = parser.parse_args(argv)
    redis_server, memcached_server = start_redis(), start_memcached()
    try:
        targets = Targets(redis_server.port, 0, memcached_server.port, free_port())
        with tempfile.TemporaryDirectory(prefix="cachectl-report-") as base:
            outcomes = list(run_many(((case, "plain") for case in CASES), targets, Path(base)))
    finally:
        redis_server.stop()
        memcached_server.stop()
    by_command: dict[str, Counter[str]] = {}
    by_backend: dict[str, Counter[str]] = {}
    by_class: dict[str, Counter[str]] = {}
    broken = []
    for outcome in outcomes:
        label = outcome_label(outcome)
        by_command.setdefault(outcome.case.command, Counter())[label] += 1
        by_backend.setdefault(outcome.case.backend, Counter())[label] += 1
        by_class.setdefault(threat_class(outcome.case.id), Counter())[label] += 1
        if violations(outcome):
            broken.append(outcome)
    errors = sum(case.is_error for case in CASES)
    print(f"{len(CASES)} inputs ({errors} bad inputs, {len(CASES) - errors} that must succeed)")
    print()
    print("\n".join(table("command", by_command)))
    print()
    print("\n".join(table("backend", by_backend)))
    print()
    print("\n".join(table("class of input", by_class)))
    print()
    print(f"{len(CASES) - len(broken)} of {len(CASES)} meet the contract; {len(broken)} do not")
    if options.failures:
        for outcome in broken:
            print(f"- {outcome.case.id}: {'; '.join(violations(outcome))} -- {shown(outcome, 160)}")
    return 0 if not broken else 1


if __name__ == "__main__":
    sys.exit(main())
