"""A job's results for people: one self-contained HTML page, and HParams runs.

`write_report(job_dir)` reads the store and writes `<job_dir>/report.html`:
plain HTML with its own CSS, a few lines of script to sort tables and charts
drawn as inline SVG, so it opens offline, from a copy or an e-mail.
`write_hparams_summaries(job_dir)` writes one TensorBoard run per trial so
trials compare in TensorBoard's HParams dashboard.

Both only read the store, so they can run while a search is going on. The
modules by role: `data` (the store read into stage views), `charts` (the SVG
chart library), `drawings` (architecture drawings, by spec class), `page`
(the page and its sections), `hparams` (the TensorBoard runs). This package
re-exports what callers use, so `report.write_report(...)` keeps working.
"""

from trainer.report.charts import Point, Series, pareto_front
from trainer.report.data import (FLOPS, LATENCY, MEMORY, STAGE_TITLES,
                                 Architectures, StageView, accuracy)
from trainer.report.drawings import architecture_html, register_drawing
from trainer.report.hparams import (HPARAMS_DIR, STATUS_HPARAM,
                                    write_hparams_summaries)
from trainer.report.page import (AUGMENT_PREVIEW_FILE, MIN_RANK_PAIRS,
                                 PARETO_COSTS, REPORT_FILE, render,
                                 write_report)

__all__ = [
    'AUGMENT_PREVIEW_FILE', 'Architectures', 'FLOPS', 'HPARAMS_DIR', 'LATENCY',
    'MEMORY', 'MIN_RANK_PAIRS', 'PARETO_COSTS', 'Point', 'REPORT_FILE',
    'STAGE_TITLES', 'STATUS_HPARAM', 'Series', 'StageView', 'accuracy',
    'architecture_html', 'pareto_front', 'register_drawing', 'render',
    'write_hparams_summaries', 'write_report',
]
