"""Engine-level check of the token codebook size on bench/late.py's 20k realistic corpus (not part of the bench).

    python bench/late.py --pages 20000 --dir DIR ...          # builds DIR/exact and DIR/queries.npz
    python bench/late_codebook.py 16384 DIR                   # CascadeEngine(max_centroids=16384)

Builds a `CascadeEngine` in memory from the same generated corpus (commit groups of 1024 pages)
and prints recall@10 of 32 of the bench's queries against the exact engine in DIR.
"""

import sys, time, numpy as np
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import late_exact
from corpus_late import RealisticCorpus, groups
from dse.engines.maxsim import MaxSimEngine
from dse.engines.cascade.engine import CascadeEngine
d = sys.argv[2]; n = 20000
qz = np.load(d + "/queries.npz"); Q = [qz["tokens"][a:b] for a, b in zip(qz["offsets"][:-1], qz["offsets"][1:])][:32]
ex = MaxSimEngine.load(d + "/exact", rows=n)
os_, or_ = late_exact.oracle(ex, Q, depth=10)
c = RealisticCorpus(n, 0, 768, 128)
e = CascadeEngine(max_centroids=int(sys.argv[1])); t = time.time()
for a, b in groups(c.doc_starts, n, 1024):
    e.add([c.page(i) for i in range(a, b)])
    if a == 0: print("first segment", time.time() - t, len(e._codebook.centroids), flush=True)
print("build", time.time() - t, flush=True)
e.search(Q[:2], 10)
for kw in [dict(), dict(n_coarse=512), dict(n_shortlist=512, n_coarse=0)]:
    t = time.time(); r = np.stack([e.search([q], 10, **kw)[1][0] for q in Q]); ms = (time.time() - t) * 1e3 / len(Q)
    print(kw, e.knobs(**kw), "recall", late_exact.recall(ex, Q, r, os_), "mean ms (in memory)", round(ms, 1), flush=True)
print("resident B/page", e.resident_bytes() / n)
