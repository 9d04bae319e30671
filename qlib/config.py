"""The configuration of a run: one dataclass, validated once where it is made."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .losses import NEGATIVE_MODES
from .models import MODEL_NAMES
from .modules import QuantConfig
from .quant import QUANTIZERS, MDSQuantizer
from .runtime import DTYPES
from .tasks import TASKS
from .xtc import xtc_quant_config

METHODS = ("fp", *QUANTIZERS)  # "fp": no quantizer (teachers, controls); the rest from the registry
LOSSES = ("auto", "lm", "dist", "dist+cont", "xtc")
LAYERS = ("last", "first", "encoder")
DYNAMIC_SCALING = tuple(m for m, q in QUANTIZERS.items() if issubclass(q, MDSQuantizer))  # methods with a gamma


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults: a 2-2-8 QuantGPT student of SmolLM2-135M on PTB (paper hyper-parameters,
    a CPU-sized token budget)."""

    task: str = "lm"
    model: str = "smollm2-135m"
    dataset: str = "ptb"
    method: str = "mds"  # "fp": fine-tune the full-precision teacher
    w_bits: int = 2
    e_bits: int | None = None
    a_bits: int | None = 8
    teacher: str | None = None  # folder of a finished "fp" run (its model.safetensors); None: the pretrained model
    loss: str = "auto"  # auto: fp -> lm; mds -> dist+cont; other methods -> dist (as the paper's baselines)
    lam: float = 0.1
    num_negatives: int = 64
    temperature: float = 0.1
    momentum: float = 0.5
    negatives: str = "teacher"
    use_bank: bool = True
    contrast_layer: str = "last"
    proj_dim: int = 128
    seq_len: int = 512
    eval_seq_len: int | None = None  # context of the LM evaluations (None: seq_len); presets use the paper's 512
    batch_size: int = 4
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs
    train_tokens: int | None = None  # use only the first N tokens of the train split
    lr: float = 5e-4
    quant_lr: float = 1e-3
    gamma_init: float = 1.0  # where dynamic scaling's gamma starts (the paper: 1, i.e. alpha = mean|w|)
    act_granularity: str = "token"  # activation ranges per position (causal); "tensor": over the batch (ablation)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 0  # 0: only at step 0, the curve points and the end
    curve_points: int = 6  # validation PPL at this many log-spaced steps of the budget, the last its end (plus step 0)
    curve_at: tuple[int, ...] = ()  # and at these steps too (a longer run evaluated where a shorter one ended)
    eval_tokens: int | None = None  # cap on validation tokens during training (test is always complete)
    test_tokens: int | None = None  # cap on test tokens (None: the whole test split)
    extra_eval: tuple[str, ...] = ()  # more LM test sets, zero-shot (e.g. "wikitext2")
    save_every: int = 50
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with bf16 matrix units, else fp32
    compile: bool = False  # torch.compile the student (fake-quantizers inside the graph) and L_dist (the benchmark decides)
    out_dir: str = "runs/default"
    resume: bool = False
    preset: str = "custom"
    progress: bool = True
    eval_batch_size: int = 8
    max_examples: int | None = None  # mc / summarization / classification: cap on examples per split
    eval_examples: int | None = None  # cap on the validation examples (the learning curve), else max_examples
    test_examples: int | None = None  # cap on the test examples read at the end, else max_examples
    num_candidates: int = 20  # mc: replies per example at evaluation (hits@1 among them)
    train_candidates: int | None = None  # mc: replies per training example (gold + last distractors); None: all
    source_len: int = 512
    target_len: int = 64
    # summarization-lm: distil on the positions that predict the summary ("target", as BART's decoder) or on every
    # position, the article's too ("all": beyond the paper, ~12x the distillation signal per step at the same cost)
    distill_span: str = "target"
    keep_layers: tuple[int, ...] = ()  # layer reduction (XTC): the teacher layers the student keeps
    init_from: str | None = None  # folder of a finished run whose final weights initialise the student
    extra: dict = field(default_factory=dict)  # free-form notes recorded in the result file
    name: str = ""  # the run's short name in its grid ("mds-228-dist-only"): it names the run, computes nothing

    def __post_init__(self):
        checks = [(self.task in TASKS, f"task must be one of {sorted(TASKS)}, got {self.task!r}"),
                  (self.model in MODEL_NAMES, f"unknown model {self.model!r}; known: {MODEL_NAMES}"),
                  (self.method in METHODS, f"unknown method {self.method!r}; known: {METHODS}"),
                  (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
                  (self.negatives in NEGATIVE_MODES, f"negatives must be one of {NEGATIVE_MODES}"),
                  (self.contrast_layer in LAYERS, f"contrast_layer must be one of {LAYERS}"),
                  (self.lr > 0 and self.quant_lr > 0, f"learning rates must be > 0, got {self.lr}, {self.quant_lr}"),
                  (self.gamma_init > 0, f"gamma_init must be > 0, got {self.gamma_init}"),
                  (self.gamma_init == 1.0 or self.method in DYNAMIC_SCALING,
                   f"gamma_init applies to dynamic scaling (mds, mds_pact_grad) only, not {self.method!r}"),
                  (self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"),
                  (self.seq_len >= 2, f"seq_len must be >= 2, got {self.seq_len}"),
                  (self.eval_seq_len is None or self.eval_seq_len >= 2, "eval_seq_len must be >= 2"),
                  (self.epochs > 0 or (self.max_steps or 0) > 0, "train for epochs > 0 or max_steps > 0"),
                  (self.save_every >= 1, "save_every must be >= 1"),
                  (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
                  (self.curve_points >= 0, f"curve_points must be >= 0, got {self.curve_points}"),
                  (self.lam >= 0, f"lam must be >= 0, got {self.lam}"),
                  (self.train_candidates is None or 2 <= self.train_candidates <= self.num_candidates,
                   f"train_candidates must be in [2, num_candidates={self.num_candidates}], got "
                   f"{self.train_candidates}")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.method != "fp":
            self.quant_config()  # validates bits and activation granularity
        if self.task == "lm" and self.num_negatives >= self.seq_len and self.uses_contrastive:
            raise ValueError(f"num_negatives={self.num_negatives} must be smaller than seq_len={self.seq_len}")
        if self.distill_span not in ("target", "all"):
            raise ValueError(f"distill_span must be 'target' or 'all', got {self.distill_span!r}")
        if self.distill_span == "all" and self.task != "summarization-lm":
            raise ValueError("distill_span='all' is for task='summarization-lm' (article and summary in one sequence)")
        if self.contrast_layer == "encoder" and self.task != "summarization":
            raise ValueError("contrast_layer='encoder' needs an encoder-decoder model (task='summarization')")
        self.extra_eval = tuple(self.extra_eval)
        self.curve_at = tuple(int(s) for s in self.curve_at)
        if any(s < 1 for s in self.curve_at):
            raise ValueError(f"curve_at steps must be >= 1, got {self.curve_at}")
        self.keep_layers = tuple(self.keep_layers)
        if self.resolved_loss == "xtc" and self.task != "classification":
            raise ValueError("loss 'xtc' (XTC's one-stage distillation) is for task='classification'")

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        if self.task == "classification":  # XTC: task loss for the teacher, one-stage KD for every student
            return "lm" if self.method == "fp" and not self.keep_layers else "xtc"
        return {"fp": "lm", "mds": "dist+cont"}.get(self.method, "dist")

    @property
    def eval_context(self) -> int:
        return self.eval_seq_len or self.seq_len

    @property
    def uses_contrastive(self) -> bool:
        return self.resolved_loss == "dist+cont"

    def quant_config(self) -> QuantConfig:
        if self.resolved_loss == "xtc":
            return xtc_quant_config(self.method, self.w_bits, self.e_bits, self.a_bits)
        extra = ("multiple_choice_head.summary",) if self.task == "mc" else ()  # App. B.5: the MC head too
        return QuantConfig(self.method, self.w_bits, self.e_bits, self.a_bits, act_granularity=self.act_granularity,
                           extra_modules=extra)

    @property
    def label(self) -> str:
        """W-E-A bits of the run ("2-2-8"), or "fp32" for a full-precision model (teacher or control)."""
        return "fp32" if self.method == "fp" else self.quant_config().label

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)
