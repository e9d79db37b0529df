"""Which of the 5 time cells of an exact 44-frame window gives the max (per channel)?
Edge cells (0, 4) sit next to the window's zero padding. One test clip per machine."""
import numpy as np
import common as C
s = C.session(C.make_cells_model())
rows, seen = [], set()
for r in C.manifest():
    if r["split"] == "test" and r["machine"] not in seen:
        seen.add(r["machine"]); rows.append(r)
hist = np.zeros(5)
for r in rows:
    x = C.load_audio(r["path"]); L = C.logmel(x, C.level_gain(x))
    cells = C.run_cells(s, np.stack([L[22 * w:22 * w + 44] for w in range(18)]))
    am = cells.argmax(axis=2).ravel()
    hist += np.bincount(am, minlength=5)
print("share of channels whose max is in cell 0..4:", np.round(hist / hist.sum(), 3))
