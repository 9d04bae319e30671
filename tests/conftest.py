import copy
import os

import pytest

# tests never wait on the hub: a missing offline file must fail fast with our error
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
import torch
import transformers as tf

from qlib.models import tiny_config


def _tiny(name, cls, vocab=97):
    torch.manual_seed(0)
    return cls(tiny_config(name, vocab)).eval()


TINY_MODELS = {
    "gpt2": lambda: _tiny("tiny-gpt2", tf.GPT2LMHeadModel),
    "llama": lambda: _tiny("tiny-llama", tf.LlamaForCausalLM),
    "bart": lambda: _tiny("tiny-bart", tf.BartForConditionalGeneration),
    "bert": lambda: _tiny("tiny-bert", tf.BertForSequenceClassification),
}


def model_inputs(kind, vocab=97, batch=2, length=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    kw = {"input_ids": ids}
    if kind == "bart":
        kw["decoder_input_ids"] = ids.flip(1)
    return kw


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_kind(request):
    return request.param


@pytest.fixture
def tiny_model(tiny_kind):
    return TINY_MODELS[tiny_kind]()


def fresh_copy(model):
    return copy.deepcopy(model)


def offline_data():
    from qlib.runtime import data_dir
    d = data_dir()
    if d is None:
        pytest.skip("QLIB_DATA_DIR is not set (CI sets it to ../shared/data)")
    return d


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Result and run folders of a test's own: nothing it writes reaches results/ or runs/."""
    monkeypatch.setenv("QLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("QLIB_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path
