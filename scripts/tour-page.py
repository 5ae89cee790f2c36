#!/usr/bin/python3
"""The course tour as one page: out/tour/index.html, written by scripts/tour.sh.

  tour-page.py write DIR   reads DIR/results.txt (the tour's RESULT lines, each ending "| <time>"; the first
                           line "BLAS: ..." names the OpenBLAS core) and writes DIR/index.html: the summary
                           table, each example's pictures (DIR/NN_*.png) beside its rows, links to its CSVs
                           and log, the BLAS core and the date.
  tour-page.py check DIR   fails (exit 1, naming what is missing) unless DIR/index.html names every RESULT row
                           of DIR/results.txt and shows every picture DIR holds.

Self-contained: inline CSS, relative links, no script, nothing fetched. Standard library only (Debian's
/usr/bin/python3).
"""
import datetime
import html
import os
import re
import sys

COLUMNS = ["example", "task", "metric", "target", "achieved", "result", "time"]


def read_results(d):
    path = os.path.join(d, "results.txt")
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        sys.exit(f"tour-page: cannot read {path}: {e.strerror}")
    blas, rows = "unknown", []
    for n, line in enumerate(lines, 1):
        if line.startswith("BLAS: "):
            blas = line[len("BLAS: "):]
        elif line.startswith("RESULT |"):
            cells = [c.strip() for c in line[len("RESULT |"):].split(" | ")]
            if len(cells) != len(COLUMNS):
                sys.exit(f"tour-page: {path}:{n}: {len(cells)} cells, expected {len(COLUMNS)}: {line}")
            rows.append(cells)
        elif line.strip():
            sys.exit(f"tour-page: {path}:{n}: neither a RESULT row nor the BLAS line: {line}")
    if not rows:
        sys.exit(f"tour-page: {path} holds no RESULT row")
    return blas, rows


def prefix(name):
    """The example's number: '07' for '07_lstm_adding (gradient flow)' and for '07_gradient_flow.png'."""
    m = re.match(r"(\d\d)_", name)
    return m.group(1) if m else None


def files(d, ext):
    return sorted(f for f in os.listdir(d) if f.endswith(ext) and os.path.isfile(os.path.join(d, f)))


def write(d):
    blas, rows = read_results(d)
    pngs, csvs, logs = files(d, ".png"), files(d, ".csv"), files(d, ".log")
    # Rows grouped by example number, in tour order; the pictures and files cell spans the group's rows.
    groups = []
    for r in rows:
        p = prefix(r[0])
        if groups and groups[-1][0] == p:
            groups[-1][1].append(r)
        else:
            groups.append((p, [r]))
    placed = set()
    e = html.escape
    body = []
    for p, grp in groups:
        mine = lambda fs: [f for f in fs if p is not None and prefix(f) == p and f not in placed]
        pics, data, log = mine(pngs), mine(csvs), mine(logs)
        placed.update(pics + data + log)
        side = "".join(f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}" title="{e(f)}"></a>' for f in pics)
        links = " ".join(f'<a href="{e(f)}">{e(f)}</a>' for f in data + log)
        side += f'<div class="files">{links}</div>' if links else ""
        for i, r in enumerate(grp):
            cls = "pass" if r[5] == "PASS" else "fail"
            cells = "".join(f"<td>{e(c)}</td>" for c in r[:5])
            cells += f'<td class="{cls}">{e(r[5])}</td><td>{e(r[6])}</td>'
            if i == 0:
                cells += f'<td class="pics" rowspan="{len(grp)}">{side}</td>'
            body.append(f'<tr class="{cls}">{cells}</tr>')
    # Pictures of no example with a row (a crashed example still has its FAIL row; this is for strays).
    rest = [f for f in pngs if f not in placed]
    extra = ""
    if rest:
        extra = "<h2>Other pictures</h2><p>" + "".join(f'<a href="{e(f)}"><img src="{e(f)}" alt="{e(f)}"></a>' for f in rest) + "</p>"
    passed = sum(r[5] == "PASS" for r in rows)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tapegrad course tour</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; font-size: 14px; }}
th {{ background: #eee; text-align: left; }}
td.pass {{ color: #060; font-weight: bold; }} td.fail {{ color: #b00; font-weight: bold; }}
tr.fail td {{ background: #fff3f3; }}
td.pics {{ width: 40%; }}
td.pics img {{ max-width: 100%; max-height: 260px; display: block; margin-bottom: 4px; border: 1px solid #ddd; }}
.files {{ font-size: 12px; }} .files a {{ margin-right: 0.6em; }}
img {{ max-width: 420px; }}
</style></head>
<body>
<h1>tapegrad course tour</h1>
<p>{passed} of {len(rows)} rows PASS. Written {e(date)}. BLAS: {e(blas)}.
Each example also runs alone with its full settings (<code>./build/examples/NN_name --help</code>).</p>
<table>
<tr>{"".join(f"<th>{c}</th>" for c in COLUMNS)}<th>pictures, curves (CSV) and log</th></tr>
{chr(10).join(body)}
</table>
{extra}
</body></html>
"""
    with open(os.path.join(d, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)


def check(d):
    _, rows = read_results(d)
    path = os.path.join(d, "index.html")
    try:
        page = open(path, encoding="utf-8").read()
    except OSError as e:
        sys.exit(f"tour-page: cannot read {path}: {e.strerror}")
    missing = []
    for r in rows:
        # The row's cells, in order, each as the page's escaped text of one cell.
        cls = "pass" if r[5] == "PASS" else "fail"
        want = "".join(f"<td>{html.escape(c)}</td>" for c in r[:5])
        want += f'<td class="{cls}">{html.escape(r[5])}</td><td>{html.escape(r[6])}</td>'
        if want not in page:
            missing.append(f"row {r[0]} | {r[1]}")
    for f in files(d, ".png"):
        if f'<img src="{html.escape(f)}"' not in page:
            missing.append(f"picture {f}")
    if missing:
        print(f"tour-page: {path} misses:", *missing, sep="\n  ", file=sys.stderr)
        return 1
    print(f"tour-page: {path} names all {len(rows)} rows and {len(files(d, '.png'))} pictures")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    if not os.path.isdir(sys.argv[2]):
        sys.exit(f"tour-page: {sys.argv[2]} is not a folder")
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
