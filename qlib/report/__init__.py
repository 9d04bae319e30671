"""Tables, readings and verdicts for the book: our committed results beside the paper's numbers (always labelled
as the paper's). Runs are looked up by name in their grid and each result file is read once per call
(``common.load_grid``); a run without a result is "not run", with the command that makes it (``not_run``).

One namespace for the notebooks, split by the chapter each part serves:

- ``common``: display (``show``, ``markdown``, number formats), the results loader, the provenance of a reading;
- ``verdicts``: the seed spreads, the band of a comparison, ``verdict``, ``gap_text``, ``collapsed``;
- ``synthesis``: facts several pages state (budget, device), the 2-bit attribution, the TL;DR, the claims table;
- ``lm``: the language-modeling tables, curves, step-0 PPLs and claims;
- ``recipe``: learning-rate sweeps, the teacher's budget, bf16 against fp32;
- ``analyses``: what is computed from a model when the book is built (initialisation, sizes, why-hard data);
- ``contrastive``: does L_cont matter (its gradient share, its weight, the long runs);
- ``ablations``, ``tasks`` (next utterance, summarization), ``xtc``, ``bench``: those chapters' tables and readings;
- ``deploy``: the trained student exported to GGUF and run in llama.cpp beside PyTorch;
- ``not_run``: the commands of the runs still missing.

Titles and chapter references are arguments: the notebooks pass their own numbers.
"""
# the paper's numbers the notebooks pass to tables (the report modules import what they read from qlib.paper)
from ..paper import PAPER_NEGATIVES_LAYER_PTB, PAPER_PTB_TEACHER, PAPER_TABLE1, PAPER_TABLE7_PTB  # noqa: F401
from .ablations import (VARIANT_NAMES, ablation_table, ablations_note, ablations_tldr,  # noqa: F401
                        negatives_curve, negatives_keys)
from .analyses import (gamma_start_table, grid_text, homogeneity_table, init_error_table,  # noqa: F401
                       packed_roundtrip, size_table, why_hard_data)
from .bench import (CPU_BENCH, paper_table5, performance_reading, performance_table,  # noqa: F401
                    performance_tldr)
from .deploy import (DEPLOY_CANDIDATES, deploy_command, deploy_reading, deploy_result, deploy_run, deploy_table,  # noqa: F401
                     deploy_tables, export_demo)
from .contrastive import (LAMBDA_RUNS, LONG_RUNS, contrastive_verdict, grad_share_curves,  # noqa: F401
                          grad_share_table, lambda_table, long_curves, long_marker, long_table, missing_note)
from .common import (BASELINES, GridResults, device_label, load_grid, load_grids, markdown, ppl_text,  # noqa: F401
                     show)
from .lm import (bits_rows, claims, curves, gamma_reading, gammas, lm_table, paper_ratio,  # noqa: F401
                 samples_table, step0_ppl, step0_table, teacher_test_ppl, teacher_valid_ppl, transfer_table)
from .not_run import not_run  # noqa: F401
from .synthesis import (attribution_table, attribution_text, budget, budget_sentence, device_facts,  # noqa: F401
                        final_ratios, missing_runs_line, lm_tldr, paper_budget_tokens, results_tldr, synthesis_table,
                        tldr)
from .recipe import (RATE_RULE, SWEEP_METRIC, dtype_reading, dtype_table, lr_sweep_table, swept_rate,  # noqa: F401
                     teacher_budget_reading)
from .tasks import (TASK_FLOOR, TASK_METRICS, TASK_READING, TASK_SCORES, TASK_TEACHER_GAP, TASK_TITLE,  # noqa: F401
                    chosen_replies, dialogue_example, distill_span_table, generated_summaries, task_claims,
                    task_curve_plot, task_curves, task_reading, task_table, task_tldr)
from .verdicts import (COLLAPSED, SEED_METHODS, budget_text, collapsed, gap_text, last_half_fall,  # noqa: F401
                       method_spread, pair_band, seed_band, seed_band_note, seed_spreads, verdict)
from .xtc import (XTC_METRIC, lm_xtc_gaps, lm_xtc_reading, lm_xtc_table, paper_xtc_table,  # noqa: F401
                  xtc_gaps, xtc_table, xtc_tldr)
