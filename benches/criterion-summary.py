#!/usr/bin/env python3
"""Condenses criterion's console output (stdin) to one line per benchmark:
name, median time, median throughput. Usage: cargo bench ... | python3 benches/criterion-summary.py"""
import re
import sys

name = None
rows = []
for line in sys.stdin:
    line = line.rstrip("\n")
    m = re.match(r"^(\S.*?)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
    if m:
        rows.append([m.group(1), m.group(2), ""])
        continue
    if line and not line.startswith(" ") and "time:" not in line and not line.startswith(("Benchmarking", "Found", "Gnuplot", "Warning", "warning", "  ")):
        name = line.strip()
    m = re.match(r"^\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
    if m and name:
        rows.append([name, m.group(1), ""])
        continue
    m = re.match(r"^\s+thrpt:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
    if m and rows:
        rows[-1][2] = m.group(1)
for r in rows:
    print(f"{r[0]:<48} {r[1]:>12} {r[2]:>16}")
