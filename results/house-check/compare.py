import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
def rows(d): return {(r["method"], r["setting"]): r for r in d["results"]}
ra, rb = rows(a), rows(b)
skip = {"eval_s", "kld_percentiles"}
same = diff = 0
for k in ra:
    if k not in rb:
        print("only in first:", k); continue
    x, y = ra[k], rb[k]
    keys = [q for q in x if q not in skip]
    bad = [q for q in keys if x[q] != y.get(q)]
    if bad: diff += 1; print("DIFF", k, bad[:6], [ (x[q], y.get(q)) for q in bad[:2]])
    else: same += 1
print("only in second:", [k for k in rb if k not in ra])
print(f"{same} rows identical in every field but timings, {diff} differ")
pa, pb = a.get("per_site", {}), b.get("per_site", {})
ps_diff = [m for m in pa if m in pb and pa[m] != pb[m]]
print("per_site differing methods:", ps_diff)
