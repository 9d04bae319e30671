"""The paper's experiments as named grids of ``TrainConfig``s, each run at most once.

- ``presets``: what each preset trains (``smoke``, ``cpu``, ``gpu``, ``paper``) and the builders of single runs;
- ``registry``, ``grids``, ``task_grids``: the named grids (``GRIDS``; ``runs(name, preset)`` by short name);
- ``store``: where result files and run folders live, and which result file is exactly a config's run;
- ``runner``: ``run``/``run_grid`` (load a committed result or train, resumably), ``command``, ``status``;
- ``cached_evals``: evaluations of a run saved beside its result (step 0, zero-shot transfer, samples, figures).
"""
from .presets import (EVAL_CONTEXT, GAMMA_INIT, LM_METHODS, LM_SETTINGS, LR_SWEEP, PRESET_DTYPE, PRESETS, ROW_STEPS,
                      STUDENT_LR, TEACHER_EPOCHS, lm_base, lm_control, lm_student, lm_teacher, preset_dtype,
                      xtc_teacher)
from .registry import GRIDS, grid, grid_builder, grid_command, run_key, runs
from .grids import (DTYPE_STEPS, LAMBDAS, LONG_FACTOR, LONG_LAMBDA, lm_dtype_grid, lm_long_grid, lm_xtc_grid,
                    xtc_grid)
from .task_grids import TASK_GRIDS, task_base, task_grid, task_lr_grid, task_student, task_teacher, teacher_epochs
from .store import (BUDGET_FIELDS, RUN_FOLDERS, VOLATILE, Store, default_store, load_result, recorded_config,
                    result_path, results_dir, runs_dir, same_config, write_result)
from .runner import command, ensure_dependencies, run, run_grid, status, trained_model
from .cached_evals import (FIGURE_SENTENCE, SAMPLE_PROMPTS, SAMPLE_TOKENS, TRANSFER_TOKENS, figure_data,
                           figure_module, figure_modules, figures_path, samples_path, step0_eval, step0_path,
                           text_samples, transfer_eval, transfer_path)
