"""Offline data readers, model names and their errors."""
import pytest

from qlib import data as D
from qlib import models as M

from .conftest import offline_data


def test_ptb_blocks_from_offline_files():
    offline_data()
    tok = M.load_tokenizer("tiny-gpt2")
    blocks = D.lm_blocks("ptb", "test", tok, 128)
    assert blocks.shape[1] == 128 and 700 < blocks.shape[0] < 900  # ~82k GPT-2 tokens in PTB test
    text = tok.decode(blocks[0])
    assert "<unk>" in D.read_lm_text("ptb", "test") and text.strip().split()[0].isalpha()
    assert D.lm_blocks("ptb", "valid", tok, 64, max_tokens=1000).shape == (15, 64)


def test_unavailable_split_raises_a_clear_error():
    offline_data()
    tok = M.load_tokenizer("tiny-gpt2")
    with pytest.raises(FileNotFoundError, match="wikitext2 train is not available"):
        D.lm_blocks("wikitext2", "train", tok, 64)
    with pytest.raises(FileNotFoundError, match="XSum train"):
        D.xsum_examples("train")
    with pytest.raises(FileNotFoundError, match="Persona-Chat"):
        D.personachat_dialogs("train")
    with pytest.raises(ValueError, match="unknown language-modeling dataset"):
        D.read_lm_text("penn", "test")


def test_missing_data_dir_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("QLIB_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="QLIB_DATA_DIR"):
        D.read_lm_text("ptb", "test")


def test_xsum_offline_sample():
    offline_data()
    ex = D.xsum_examples("test")
    assert len(ex) == 321 and all(e["document"] and e["summary"] for e in ex)
    assert ex[0]["summary"].startswith('"Maverick"')
    tok = M.load_tokenizer("tiny-bart")
    batch = D.summarization_batch(ex[:2], tok, source_len=64, target_len=16)
    assert batch["input_ids"].shape[1] <= 64 and (batch["labels"] == -100).any() | (batch["labels"] >= 0).all()


def test_personachat_double_head_format():
    offline_data()
    tok = M.load_tokenizer("tiny-gpt2")
    dialogs = [{"personality": ["i like cats ."], "history": ["hi", "hello there"],
                "candidates": [f"reply number {i}" for i in range(5)] + ["the gold reply"]}] * 2
    b = D.personachat_batch(dialogs, tok, num_candidates=4, max_len=40)
    assert b["input_ids"].shape[:2] == (2, 4) and b["mc_labels"].tolist() == [3, 3]
    gold_labels = b["lm_labels"][0, 3][b["lm_labels"][0, 3] != -100]
    assert tok.decode(gold_labels).strip().startswith("the gold reply")
    assert (b["lm_labels"][0, :3] == -100).all()  # distractors carry no LM loss
    last = b["mc_token_ids"][0, 0]
    assert b["attention_mask"][0, 0, last] == 1 and (last + 1 == b["input_ids"].shape[-1] or b["attention_mask"][0, 0, last + 1] == 0)
    with pytest.raises(ValueError, match="candidates"):
        D.personachat_batch(dialogs, tok, num_candidates=10)


def test_model_names_and_errors():
    with pytest.raises(ValueError, match="unknown model"):
        M.load_model("gpt5")
    with pytest.raises(ValueError, match="cannot do task"):
        M.load_model("tiny-bert", "lm")
    m = M.load_model("tiny-llama", "lm", vocab_size=100)
    assert m.lm_head.weight is m.model.embed_tokens.weight
    assert type(M.load_model("tiny-gpt2", "mc", vocab_size=100)).__name__ == "GPT2DoubleHeadsModel"


def test_offline_pretrained_model_package_is_found():
    folder, fname = M.smollm2_path()
    assert (folder / fname).stat().st_size > 50e6
    assert (M.minilm_path() / "config.json").is_file()


def test_a_tokenizer_without_its_files_is_an_error_not_an_empty_vocabulary(tmp_path, monkeypatch):
    # what transformers 5 returns offline when the files are missing: a tokenizer of one token
    class LoadedNothing:
        pad_token = eos_token = None

        def __len__(self):
            return 1

    monkeypatch.setattr(M, "data_dir", lambda: tmp_path)  # no gpt2-tokenizer/ there
    monkeypatch.setattr(M.tf.GPT2Tokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: LoadedNothing()))
    with pytest.raises(FileNotFoundError, match="came back empty"):
        M.load_tokenizer("tiny-llama")
