#!/usr/bin/env python3
"""Which top-level modules of src/ each one uses through `crate::` (comments and tests.rs files
left out), and the import loops between them (strongly connected groups).
Usage: python3 scripts/module-loops.py [src]"""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
def top(path):
    rel = os.path.relpath(path, root)
    return rel.split(os.sep)[0].removesuffix('.rs')
edges = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.join(d, f); m = top(p)
        if m in ('lib', 'main'): continue
        text = '\n'.join(l for l in open(p).read().split('\n') if not l.lstrip().startswith('//'))
        if f == 'tests.rs': continue
        for t in re.findall(r'\bcrate::([a-z_]+)', text):
            if t != m: edges.setdefault(m, set()).add(t)
mods = sorted(set(edges) | {t for s in edges.values() for t in s})
for m in mods:
    print(f"{m:14} -> {', '.join(sorted(edges.get(m, ())))}")
# strongly connected components (Tarjan)
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: sccs.append(sorted(c))
sys.setrecursionlimit(10000)
for v in mods:
    if v not in index: sc(v)
print("\nimport loops (strongly connected groups of top-level modules):")
for c in sccs:
    print("  ", c)
    for a, b in itertools.permutations(c, 2):
        if b in edges.get(a, ()) and a in edges.get(b, ()) and a < b:
            print(f"     {a} <-> {b}")
if not sccs: print("   none")
