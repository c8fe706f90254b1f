#!/usr/bin/env python3
"""bfp_kcache.py — K-cache table for docs/results/bfp.md from the kvq report
JSON written by scripts/bfp_results.sh: for every run that compresses only the
K side (V stays f16), the measured K-cache bytes per token are the run's total
KV bytes per token minus the V half of the all-f16 run (same cache layout, so
the same V bytes and page-table entries), and the saving is relative to an f16
K cache measured the same way.  Usage: bfp_kcache.py REPORT.json > table.md"""
import json
import sys


def main(path):
    runs = json.load(open(path))["runs"]
    f16 = next(r for r in runs if r["config"]["k"] == "f16" and r["config"]["v"] == "f16")
    v_half = f16["kv"]["bytes_per_token"] / 2
    k_f16 = f16["kv"]["bytes_per_token"] - v_half
    print("| K cache (V f16) | K bytes/token | K bits/value | saving vs f16 K | mean KLD | ± | same top |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        c = r["config"]
        if c["v"] != "f16" or c["w"] or not c["k"]:
            continue
        kb = r["kv"]["bytes_per_token"] - v_half
        per_value = r["kv"]["bits_per_value"] * 2 - f16["kv"]["bits_per_value"]
        print("| `%s` | %.1f | %.3f | %.2fx | %.6f | %.6f | %.2f%% |" % (
            r["label"], kb, per_value, k_f16 / kb, r["kld"]["mean"], r["kld"]["unc"],
            100 * r["same_top"]["value"]))


if __name__ == "__main__":
    main(sys.argv[1])
