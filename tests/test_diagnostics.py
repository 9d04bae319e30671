"""The split of a QuantGPT update into its L_dist and lambda * L_cont parts (``qlib.diagnostics``)."""
import math

import pytest
import torch

from qlib import train as T
from qlib.diagnostics import clipped_shares, gradient_parts
from qlib.train import TrainConfig, train

from .conftest import offline_data


def test_gradient_parts_match_the_gradients_written_out():
    w = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([3.0], requires_grad=True)]
    l_dist = (w[0] * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4 | 0): norm 5
    l_cont = (w[0] * torch.tensor([0.0, 1.0])).sum() + 2 * w[1].sum()  # gradient (0, 1 | 2): norm sqrt(5)
    p = gradient_parts(l_dist, l_cont, w)
    assert p["dist_grad_norm"] == pytest.approx(5.0) and p["cont_grad_norm"] == pytest.approx(math.sqrt(5))
    assert p["ratio"] == pytest.approx(math.sqrt(5) / 5)
    assert p["cosine"] == pytest.approx(4 / (5 * math.sqrt(5)))
    # the sum (3, 5 | 2) has |g|^2 = 38; <g_dist, g> = 29, <g_cont, g> = 9
    assert p["dist_share"] == pytest.approx(29 / 38) and p["cont_share"] == pytest.approx(9 / 38)
    c = clipped_shares(p, total_norm=10.0, max_norm=1.0)
    assert c["clip_coef"] == pytest.approx(0.1, rel=1e-5) and c["dist_update_norm"] == pytest.approx(0.5, rel=1e-5)
    assert clipped_shares(p, total_norm=0.5, max_norm=1.0)["clip_coef"] == 1.0  # below the threshold: no clip
    # the graph survives for the step's own backward pass
    (l_dist + l_cont).backward()
    assert w[0].grad.tolist() == [3.0, 5.0]


def test_a_nan_gradient_is_an_error():
    w = [torch.tensor([1.0], requires_grad=True)]
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        gradient_parts((w[0] * float("nan")).sum(), w[0].sum(), w)


def _tiny(tmp_path, name, **kw):
    base = dict(task="lm", model="tiny-llama", dataset="ptb", method="mds", w_bits=2, seq_len=32, batch_size=4,
                num_negatives=8, train_tokens=2048, eval_tokens=512, test_tokens=512, max_steps=6, curve_points=3,
                save_every=3, dtype="fp32", progress=False)
    return TrainConfig(**{**base, **kw, "out_dir": str(tmp_path / name)})


@pytest.mark.slow
def test_every_contrastive_run_records_the_split_beside_its_curve_points_without_changing_the_run(tmp_path,
                                                                                                 monkeypatch):
    offline_data()
    res = train(_tiny(tmp_path, "diag"))
    steps = [d["step"] for d in res["cont_grad"]]
    # update s + 1 starts from the weights of curve point s (step 0, the log-spaced points, the step before the end)
    assert steps == sorted(s + 1 for s in T.diagnostic_steps(6, 3)) and steps[0] == 1 and steps[-1] == 6
    for d in res["cont_grad"]:
        assert d["dist_grad_norm"] > 0 and d["cont_grad_norm"] > 0 and -1 <= d["cosine"] <= 1
        assert d["dist_share"] + d["cont_share"] == pytest.approx(1.0)
        assert 0 < d["clip_coef"] <= 1 and d["tokens"] == (d["step"] - 1) * 4 * 32
    assert not any("cont_grad" in h for h in res["history"])  # kept once, under its own key
    # measuring costs extra backward passes and nothing else: the trained run is the same without them
    monkeypatch.setattr(T, "diagnostic_steps", lambda *a: set())
    plain = train(_tiny(tmp_path, "plain"))
    assert plain["cont_grad"] == [] and plain["metrics"] == res["metrics"]
    # a run without L_cont has no split to record
    assert "cont_grad" not in train(_tiny(tmp_path, "dist", loss="dist", max_steps=2))


@pytest.mark.slow
def test_the_split_runs_on_compiled_layers_first_compiled_on_an_ordinary_step(tmp_path, monkeypatch):
    """A resumed run compiles its layers on an ordinary step; a later step's split (extra backward passes that keep
    the graph) must still run: compiled backward passes must not free their saved buffers."""
    offline_data()
    monkeypatch.setattr(T, "diagnostic_steps", lambda *a: {2})  # steps 0 and 1 compile and run as usual
    res = train(_tiny(tmp_path, "compiled", compile=True, max_steps=3, curve_points=0))
    assert [d["step"] for d in res["cont_grad"]] == [3] and res["cont_grad"][0]["cont_grad_norm"] > 0
