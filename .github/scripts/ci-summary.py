"""`ci --json`'s report as a Markdown table for the run's summary page."""
import json
import sys

with open(sys.argv[1]) as f:
    report = json.load(f)
stages = report["stages"]
print("| tag | era | " + " | ".join(stages) + " | status | reason |")
print("|---" * (len(stages) + 4) + "|")
for row in report["tags"]:
    done = {s["stage"]: f'{s["status"]} ({s["seconds"]:.0f} s)' for s in row["stages"]}
    reason = (row.get("reason") or "").replace("|", "\\|").replace("\n", "<br>")
    cells = [row["tag"], row.get("era") or "?"] + [done.get(s, "-") for s in stages]
    print("| " + " | ".join(cells + [row["status"], reason]) + " |")
print(f'\nstate: {report["highest"]}')
