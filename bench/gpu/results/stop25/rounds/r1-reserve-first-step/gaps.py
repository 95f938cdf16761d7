#!/usr/bin/env python3
"""Per database and resolution: median decode tok/s of the timed requests, the first
inter-token gap, the largest later gap, and decode tok/s over steps 60+ (ms)."""
import json, sqlite3, statistics as st, sys
for path in sys.argv[1:]:
    db = sqlite3.connect(path)
    rows = db.execute("select label, decode_tok_s, token_times_json, prompt_tokens from requests "
                      "where warmup = 0 and run_id = (select min(id) from runs) order by id").fetchall()
    by = {}
    for label, d, tt, p in rows:
        t = json.loads(tt); g = [b - a for a, b in zip(t, t[1:])]  # ms
        by.setdefault(label, []).append((d, g[0], max(g[1:]), 1e3 / st.median(g[60:]), p))
    print(path.rsplit('/', 1)[-1])
    for label, v in by.items():
        m = lambda i: st.median(x[i] for x in v)
        print(f"  {label:>10} p={v[0][4]:5d} decode {m(0):6.1f}  first {m(1):5.2f} ms  max later {m(2):5.2f} ms  steady {m(3):6.1f}")
