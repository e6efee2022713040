"""A plain script: reads a CSV, prints a summary, writes a JSON report into out/."""

import csv
import json
import os
import sys

from summary import describe

rows = list(csv.DictReader(open(sys.argv[1], newline="")))
report = describe(rows, column="amount")
print(f"{len(rows)} rows, total amount {report['total']}, mean {report['mean']:.2f}")
print("running on", os.uname().nodename, file=sys.stderr)
os.makedirs("out", exist_ok=True)
with open("out/report.json", "w") as handle:
    json.dump(report, handle, indent=2)
