"""Turn the output of examples/bad_inputs.sh into docs/bad-inputs.md's table.

OUT=/tmp/bad bash examples/bad_inputs.sh > /tmp/bad.log 2>&1
python examples/bad_inputs_md.py /tmp/bad.log > docs/bad-inputs.md
"""

from __future__ import annotations

import re
import sys

HEAD = """# Bad inputs and the one line each gets

Every input below was fed to sslstack by [`examples/bad_inputs.sh`](../examples/bad_inputs.sh)
(offline, on 24 clips copied from `examples/fsdd-mini`); the right column is its real output,
from these commands:

```
OUT=/tmp/bad bash examples/bad_inputs.sh > /tmp/bad.log 2>&1
python examples/bad_inputs_md.py /tmp/bad.log > docs/bad-inputs.md
```

Errors exit with code 2 (code 1 for operating-system errors), print one line on stderr and
never a traceback (`sslstack --debug ...` shows one). Warnings do not stop the command. The
read-only rows run only as root (they mount a read-only tmpfs).

| bad input | command | what sslstack prints |
|---|---|---|"""

TAIL = """
Also one line each, tested in `tests/` rather than in the script: a manifest `fold` column whose
labels are `1..5` or names is accepted and kept as written in `folds.csv` and `oof.csv`
(`tests/test_folds.py`); any `OSError` (permission denied, disk full) names the file and what to
do (`tests/test_cli.py`); vectors of a dataset that another dataset's audio overwrote in a
shared store (same ids) are refused by `fit-head` and `probe` (`tests/test_datasets.py`);
`cache rm --dry-run` says `would remove <store>: <n> items, <size> MiB` and removes nothing
(`tests/test_cache_api.py`).
"""


def rows(log: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for sec in re.split(r"\n### ", "\n" + log.strip()):
        lines = [ln for ln in sec.strip().split("\n") if ln.strip()]
        if len(lines) < 2 or not lines[1].startswith("$ "):
            continue
        out.append((lines[0], lines[1][2:], lines[2:]))
    return out


def main(path: str) -> None:
    def esc(t: str) -> str:
        return t.replace("|", "\\|")

    print(HEAD)
    with open(path, encoding="utf-8") as fh:
        log = fh.read()
    for title, cmd, out in rows(log):
        shown = "<br>".join(f"`{esc(o)}`" for o in out)
        print(f"| {esc(title)} | `{esc(cmd)}` | {shown} |")
    print(TAIL)


if __name__ == "__main__":
    main(sys.argv[1])
