"""Evaluation text, windows, perplexity and the CLI of torq_ref.model (spec/FW.md sections 6, 7)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from torq_ref.model import (ModelError, TextTooShortError, calibration_windows, eval_text, eval_windows,
                            perplexity, split_windows, window_nll)
from torq_ref.model.tiny import tiny_model


@pytest.mark.clause("FW-6.1")
def test_eval_text_is_the_sorted_pydoc_topics():
    from pydoc_data.topics import topics

    text = eval_text()
    keys = sorted(topics)
    assert text.startswith(topics[keys[0]]) and text.endswith(topics[keys[-1]])
    assert len(text) == sum(len(topics[k]) for k in keys) + 2 * (len(keys) - 1)


@pytest.mark.clause("FW-6.1")
def test_tokenize_text_adds_no_special_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from torq_ref.model import tokenize_text

    tk = Tokenizer(models.WordLevel({"a": 0, "b": 1, "<s>": 2}, unk_token="<s>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers.processors import TemplateProcessing
    tk.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    assert tokenize_text(tk, "a b a").tolist() == [0, 1, 0]
    tk.save(str(tmp_path / "tokenizer.json"))
    assert tokenize_text(tmp_path, "b b").tolist() == [1, 1]
    assert tokenize_text(tmp_path / "tokenizer.json", "b a").dtype == np.int64
    from torq_ref.model import text_windows
    ev, cal = text_windows(tk, 2, 1, window=3, text="a b a b b a a a a b")
    assert ev.tolist() == [[0, 1, 0], [1, 1, 0]] and cal.tolist() == [[0, 0, 0]]


@pytest.mark.clause("FW-6.2")
def test_windows_are_consecutive_and_calibration_follows_eval():
    ids = np.arange(12 * 512 + 100)
    ev, cal = split_windows(ids)
    assert ev.shape == (8, 512) and cal.shape == (4, 512)
    assert ev[3, 0] == 3 * 512 and cal[0, 0] == 8 * 512 and cal[-1, -1] == 12 * 512 - 1
    assert np.array_equal(eval_windows(ids), ev) and np.array_equal(calibration_windows(ids), cal)
    e2, c2 = split_windows(ids, 2, 3, window=100)
    assert c2[0, 0] == 200 and c2.shape == (3, 100)
    with pytest.raises(TextTooShortError, match="need 6656 tokens"):
        split_windows(np.arange(6000), 9, 4)
    with pytest.raises(ModelError):
        split_windows(np.zeros((2, 2), int))


@pytest.mark.clause("FW-6.3")
def test_window_nll_and_perplexity_definition():
    V = 7
    assert window_nll(np.zeros((5, V)), np.array([0, 1, 2, 3, 4])) == pytest.approx(np.log(V))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, V)) * 3
    ids = rng.integers(0, V, 6)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    assert window_nll(z, ids) == pytest.approx(-np.mean(np.log(p[np.arange(5), ids[1:]])), rel=1e-12)
    m = tiny_model("llama", 0)
    wins = rng.integers(0, 96, size=(3, 9))
    ppl, nll = perplexity(m, wins, progress=False, return_nll=True)
    want = [window_nll(m.forward(w[None])[0], w) for w in wins]
    assert np.allclose(nll, want) and ppl == pytest.approx(np.exp(np.mean(want)))
    with pytest.raises(ValueError):
        perplexity(m, wins[0])


@pytest.mark.clause("FW-7.1")
def test_cli_registers_subcommands():
    from torq_ref.model import cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    cli.register_bench(sub)
    a = parser.parse_args(["models", "ppl", "--eval-windows", "2", "--act-fmt", "e2m1", "--dtype", "float64"])
    assert a.func is cli._run_ppl and a.eval_windows == 2 and a.act_fmt == "e2m1"
    plan = cli._plan(a)
    assert plan.default.act_fmt == "e2m1" and plan.default.weight_fmt is None
    a = parser.parse_args(["models", "import", "--model", "x.gguf", "--out", "d"])
    assert a.func is cli._run_import and a.cache is None
    assert parser.parse_args(["models", "--cache", "c", "ppl"]).cache == "c"
    assert parser.parse_args(["models", "ppl", "--cache", "c"]).cache == "c"
    assert parser.parse_args(["models"]).func is cli._run_models
    assert parser.parse_args(["models", "list"]).func is cli._run_models
    a = parser.parse_args(["forward", "--threads", "2", "--no-transformers"])
    assert a.func is cli._run_bench and a.cache is None
    assert cli._plan(parser.parse_args(["models", "ppl"])) is None


@pytest.mark.clause("FW-7.1", "FW-5.4")
def test_cli_import_and_ppl_on_a_tiny_gguf(tmp_path, capsys):
    pytest.importorskip("gguf")
    from test_model_gguf import write_tiny_gguf

    from torq_ref.model import cli

    write_tiny_gguf(tmp_path / "t.gguf")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    a = parser.parse_args(["models", "import", "--model", str(tmp_path / "t.gguf"), "--out", str(tmp_path / "m")])
    assert a.func(a) == 0 and "imported" in capsys.readouterr().out
    a = parser.parse_args(["models", "ppl", "--model", str(tmp_path / "m"), "--eval-windows", "2", "--window", "64",
                           "--act-fmt", "e2m1"])
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "PPL" in out and "2x64" in out
