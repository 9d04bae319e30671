"""Tables, readings and verdicts for the book: our committed results beside the paper's numbers (always labelled
as the paper's). Runs are looked up by name in their grid and each result file is read once per call
(``common.load_grid``); a run without a result is "not run", with the command that makes it (``not_run``).

One namespace for the notebooks, split by the chapter each part serves:

- ``common``: display (``show``, ``markdown``, number formats), the results loader, the provenance of a reading;
- ``verdicts``: the seed band, ``verdict``, ``gap_text``, ``collapsed``;
- ``lm``: the language-modeling tables, curves, claims and key results;
- ``recipe``: learning-rate sweeps, the teacher's budget, bf16 against fp32;
- ``analyses``: what is computed from a model when the book is built (initialisation, sizes, why-hard data);
- ``ablations``, ``tasks`` (next utterance, summarization), ``xtc``, ``bench``: those chapters' tables and readings;
- ``not_run``: the commands of the runs still missing.

Titles and chapter references are arguments: the notebooks pass their own numbers.
"""
from ..paper import (PAPER_PTB_TEACHER, PAPER_SIZES, PAPER_TABLE1, PAPER_TABLE3, PAPER_TABLE4_PTB,  # noqa: F401
                     PAPER_TABLE5, PAPER_TABLE7_PTB, PAPER_XSUM, PAPER_XTC_MNLI)
from .ablations import VARIANT_NAMES, ablation_reading, ablation_table, negatives_curve, negatives_keys  # noqa: F401
from .analyses import (gamma_start_table, grid_text, homogeneity_table, init_error_table,  # noqa: F401
                       packed_roundtrip, size_table, why_hard_data)
from .bench import (CPU_BENCH, PHASE_NAMES, bench_command, bench_reading, bench_table,  # noqa: F401
                    bench_targets_table)
from .common import (BASELINES, GridResults, device_label, load_grid, load_grids, markdown, ppl_text,  # noqa: F401
                     show)
from .lm import (bits_rows, claims, curves, gammas, key_results, lm_table, paper_ratio, samples_table,  # noqa: F401
                 step0_table, teacher_test_ppl, teacher_valid_ppl, transfer_table)
from .not_run import not_run  # noqa: F401
from .recipe import (RATE_RULE, SWEEP_METRIC, dtype_reading, dtype_table, lr_sweep_table, swept_rate,  # noqa: F401
                     teacher_budget_reading)
from .tasks import (TASK_FLOOR, TASK_METRICS, TASK_READING, TASK_SCORES, TASK_TEACHER_GAP, TASK_TITLE,  # noqa: F401
                    chosen_replies, dialogue_example, distill_span_table, generated_summaries, task_claims,
                    task_commands, task_curve_plot, task_curves, task_reading, task_table)
from .verdicts import (COLLAPSED, SEED_METHODS, collapsed, gap_text, seed_band, seed_band_note,  # noqa: F401
                       seed_spreads, verdict)
from .xtc import XTC_METRIC, lm_xtc_reading, lm_xtc_table, paper_xtc_table, xtc_reading, xtc_table  # noqa: F401
