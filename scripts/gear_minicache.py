#!/usr/bin/env python3
"""gear_minicache.py: issue 6 results (KIVI, GEAR, MiniCache KV caches).

Runs `kvq report` over three spec files and writes docs/results/gear-minicache.md
from the report.json files (kept, with each report.md and pareto.svg, under
docs/results/gear-minicache/):

  llama   llama-4.6M over corpus/mixtext/valid.txt   scripts/gear_minicache_llama.specs
  stories stories260K over TinyStories (30 KB head)  scripts/gear_minicache_stories.specs
  minicache llama-4.6M, MiniCache knobs             scripts/gear_minicache_mc.specs
  speed   llama-4.6M, interleaved rounds for tok/s   scripts/gear_minicache_speed.specs

Usage (from the project root, after `make`):
  python3 scripts/gear_minicache.py [--kvq build/kvq] [--skip-runs]

Derived columns (everything else is copied from report.json):
  page bits/value  the measured bits with the f32 window taken out: at the end of
                   a chunk every layer holds ctx-1 tokens, floor((ctx-1)/P)*P of
                   them in sealed pages (window 0); the window's bytes are exactly
                   (ctx-1-sealed) * 2 * L * kv_dim * 4, so
                   page bits = 8 * (bytes_per_token*(ctx-1) - window) / (sealed*2*L*kv_dim)
  KIVI at x        KIVI's mean KLD interpolated at x measured bits/value between its
                   2/3/4-bit points of the same page size, linearly in log(KLD)
  tok/s            n_chunks * (ctx-1) decoded tokens / the run's seconds, best of
                   the interleaved rounds
"""
import argparse
import json
import math
import os
import subprocess
import sys

DATA = "../shared/data"
OUT = "docs/results/gear-minicache"
RUNS = {
    "llama": dict(model=DATA + "/models/llama-4.6M/model.bin", tok=DATA + "/models/llama-4.6M/tok512.bin",
                  text=DATA + "/corpus/mixtext/valid.txt", specs="scripts/gear_minicache_llama.specs",
                  ctx=256, chunks=12),
    "stories": dict(model=DATA + "/models/stories260K/stories260K.bin",
                    tok=DATA + "/models/stories260K/tok512.bin",
                    text=DATA + "/corpus/tinystories/TinyStories-valid-head30k.txt",
                    specs="scripts/gear_minicache_stories.specs", ctx=512, chunks=8),
    "minicache": dict(model=DATA + "/models/llama-4.6M/model.bin", tok=DATA + "/models/llama-4.6M/tok512.bin",
                      text=DATA + "/corpus/mixtext/valid.txt", specs="scripts/gear_minicache_mc.specs",
                      ctx=256, chunks=12),
    "speed": dict(model=DATA + "/models/llama-4.6M/model.bin", tok=DATA + "/models/llama-4.6M/tok512.bin",
                  text=DATA + "/corpus/mixtext/valid.txt", specs="scripts/gear_minicache_speed.specs",
                  ctx=256, chunks=3),
}


def command(kvq, name):
    r = RUNS[name]
    return [kvq, "report", r["model"], "-z", r["tok"], "--text", r["text"], "--ctx", str(r["ctx"]),
            "--chunks", str(r["chunks"]), "--threads", "1", "--specs", r["specs"], "--out", OUT + "/" + name, "-f"]


def load(name):
    with open(OUT + "/" + name + "/report.json") as f:
        return json.load(f)


def page_bits(doc, run):
    m, e = doc["model"], doc["eval"]
    held = e["ctx"] - 1
    page = run["config"]["page"]
    sealed = held // page * page
    kvd = m["n_kv_heads"] * m["head_size"]
    window = (held - sealed) * 2 * m["n_layers"] * kvd * 4
    total = run["kv"]["bytes_per_token"] * held
    return 8 * (total - window) / (sealed * 2 * m["n_layers"] * kvd) if sealed else float("nan")


def kivi_curve(runs, page):
    pts = sorted((r["kv"]["bits_per_value"], r["kld"]["mean"]) for r in runs
                 if r["label"].startswith("KIVI-") and r["config"]["page"] == page)
    return pts


def interp(pts, x):
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1 and y0 > 0 and y1 > 0:
            f = (x - x0) / (x1 - x0)
            return math.exp(math.log(y0) + f * (math.log(y1) - math.log(y0)))
    return None


def fmt(v, nd=4):
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def quality_table(doc):
    runs = doc["runs"]
    lines = ["| config | KV bits/value (measured) | page bits/value | vs f16 | mean KLD ± unc | PPL | same top | "
             "retained | KIVI KLD at same bits | GEAR / KIVI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        x = r["kv"]["bits_per_value"]
        kivi = interp(kivi_curve(runs, r["config"]["page"]), x) if r["label"].startswith("GEAR") else None
        ratio = r["kld"]["mean"] / kivi if kivi else None
        ret = r["kv"].get("retained_fraction", 0)
        lines.append(f"| `{r['label']}` | {x:.3f} | {fmt(page_bits(doc, r), 3)} | {r['kv']['ratio_vs_f16']:.2f}x | "
                     f"{r['kld']['mean']:.6f} ± {r['kld']['unc']:.6f} | {r['ppl']['q']:.4f} | "
                     f"{100 * r['same_top']['value']:.2f}% | {fmt(100 * ret, 1) + '%' if ret else '–'} | "
                     f"{fmt(kivi, 6)} | {fmt(ratio, 2)} |")
    return "\n".join(lines)


def spec_lines(path):
    with open(path) as f:
        return [l.rstrip() for l in f if l.strip() and not l.startswith("#")]


def speed_table(doc):
    best = {}
    for r in doc["runs"]:
        name = r["label"].split("~")[0]
        tps = doc["eval"]["chunks"] * (doc["eval"]["ctx"] - 1) / r["seconds"]
        best[name] = max(best.get(name, 0), tps)
    base = best["f32"]
    lines = ["| cache | tok/s (best of 3) | vs f32 cache |", "|---|---:|---:|"]
    for name, tps in best.items():
        lines.append(f"| `{name}` | {tps:.1f} | {tps / base:.2f}x |")
    return "\n".join(lines), best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvq", default="build/kvq")
    ap.add_argument("--skip-runs", action="store_true", help="only rewrite the markdown from the kept JSON")
    ap.add_argument("--runs", default="llama,stories,minicache,speed", help="which reports to (re)run")
    a = ap.parse_args()
    cmds = {n: command(a.kvq, n) for n in RUNS}
    if not a.skip_runs:
        for n, c in cmds.items():
            if n not in a.runs.split(","):
                continue
            os.makedirs(OUT + "/" + n, exist_ok=True)
            print("+", " ".join(c), file=sys.stderr)
            subprocess.run(c, check=True)
    docs = {n: load(n) for n in RUNS}
    lib = os.path.join(os.path.dirname(a.kvq) or ".", "libkvq.a")
    exe = "/tmp/gear_residual"
    subprocess.run(["cc", "-O2", "-Ilibkvq", "-I.", "scripts/gear_residual.c", lib, "-lzstd", "-llzma", "-lpthread",
                    "-lm", "-o", exe], check=True)
    residual = subprocess.run([exe, DATA], check=True, capture_output=True, text=True).stdout.strip()
    speed, best = speed_table(docs["speed"])
    with open("scripts/gear_minicache.md.in") as f:
        text = f.read()
    subst = {"CMD_" + n.upper(): " ".join(c) for n, c in cmds.items()}
    subst["KVQ"] = a.kvq
    subst.update({"TABLE_LLAMA": quality_table(docs["llama"]), "TABLE_STORIES": quality_table(docs["stories"]),
                  "TABLE_MC": quality_table(docs["minicache"]), "TABLE_SPEED": speed,
                  "RESIDUAL": residual})
    for k, v in subst.items():
        text = text.replace("{{" + k + "}}", v)
    with open("docs/results/gear-minicache.md", "w") as f:
        f.write(text)
    print("wrote docs/results/gear-minicache.md", file=sys.stderr)


if __name__ == "__main__":
    main()
