"""Bad inputs of the command line give ``error: ...`` naming the argument and exit status 2, through
the one handler of ``torq_ref.cli.main`` (spec/CL.md sections 1-3); removed spellings name their
replacement."""
from __future__ import annotations

import pytest

from torq_ref.cli import COMMANDS, REMOVED_OPTIONS, RENAMED, build_parser, main
from torq_ref.errors import UserError

KERNEL = "torq_ref.mx:quantize"


def _fails(capsys, argv, *words):
    """main(argv) exits 2 with one ``error: `` line on stderr that holds every word; no traceback."""
    with pytest.raises(SystemExit) as exc:     # argparse's own errors exit through SystemExit
        raise SystemExit(main(argv))
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "error: " in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.clause("CL-1.1")
def test_top_level_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = list(sub.choices)
    assert len(names) <= 10
    want = ["run", "eval-plan", "report", "models", "demo", "conformance", "golden", "bench",
            "experiment", "selftest"]
    assert names == [n for n in want if n in names]
    assert set(want) - set(names) <= {"eval-plan"}           # torq_ref/torch/ may not exist yet
    bench = sub.choices["bench"]._actions[-1].choices
    assert list(bench) == ["codec", "schur-horn", "maxent", "forward", "fits", "speed"]
    exp = sub.choices["experiment"]._actions[-1].choices
    assert list(exp) == ["inter-block", "block-energy", "maxent-synthetic", "maxent-real", "torq-variant",
                         "limit", "scale-sites"]
    groups = [g.title for g in sub.choices["run"]._action_groups]
    for title in ("model and data", "methods and settings", "quantization", "fitting knobs", "output"):
        assert title in groups
    assert all(m.startswith("torq_ref.") for _, m, _ in COMMANDS)


@pytest.mark.clause("CL-2.1")
@pytest.mark.parametrize("old", sorted(RENAMED))
def test_renamed_commands_name_their_replacement(capsys, old):
    _fails(capsys, [old, "--help"], f"'{old}' was renamed; use '{RENAMED[old]}'")


@pytest.mark.clause("CL-2.1")
def test_every_replacement_parses():
    parser = build_parser()
    for new in RENAMED.values():
        words = new.split()
        if words[-1].startswith("--"):
            words.append("a.json,b.json")
        assert callable(parser.parse_args(words).func), new


@pytest.mark.clause("CL-2.2")
@pytest.mark.parametrize("command,option", sorted(REMOVED_OPTIONS))
def test_removed_options_name_their_replacement(capsys, command, option):
    argv = [command] + (["ppl"] if command == "models" else ["forward"] if command == "bench" else
                        ["inter-block"] if command == "experiment" else [])
    _fails(capsys, argv + [option, "x"], f"{option} was removed; use {REMOVED_OPTIONS[command, option]}")
    _fails(capsys, argv + [f"{option}=x"], f"{option} was removed")


@pytest.mark.clause("CL-2.2")
def test_removed_option_values(capsys):
    _fails(capsys, ["run", "--scale-alpha", "auto"], "experiment torq-variant --alpha-grid auto")
    _fails(capsys, ["run", "--scale-alpha=auto"], "--alpha-grid auto")
    _fails(capsys, ["run", "--models", "a,b"], "--models was removed; use --model a,b,c")
    _fails(capsys, ["run", "--order", "micro-macro"], "python -m torq_ref experiment torq-variant")


@pytest.mark.clause("CL-3.1")
def test_only_user_errors_become_exit_2(monkeypatch, capsys):
    """A UserError is printed and exits 2; any other exception (a bug) propagates."""
    from torq_ref.evaluate.cross_model import ReportError
    from torq_ref.model.errors import ModelError
    from torq_ref.mx.formats import FormatError
    from torq_ref.torq.methods import SettingsError

    for cls in (ReportError, ModelError, FormatError, SettingsError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
    import torq_ref.mx.cli as mxcli

    def bug(args):
        raise ValueError("a bug, not an input")

    monkeypatch.setattr(mxcli, "_demo", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["demo"])

    def bad(args):
        raise FormatError("unknown format q9")

    monkeypatch.setattr(mxcli, "_demo", bad)
    assert main(["demo"]) == 2
    assert capsys.readouterr().err == "error: unknown format q9\n"


@pytest.mark.clause("CL-3.2")
def test_argument_prefix():
    from torq_ref.conformance.profiles import ProfileError
    from torq_ref.errors import argument

    with pytest.raises(ProfileError, match=r"^--profile x\+y: boom$"):
        with argument("--profile", "x+y"):
            raise ProfileError("boom")
    with pytest.raises(KeyError):                      # not a user error: untouched
        with argument("--profile"):
            raise KeyError("k")


@pytest.mark.clause("CL-3.3")
def test_counts_and_closed_sets_are_argparse_errors(capsys):
    _fails(capsys, ["run", "--eval-windows", "0"], "--eval-windows", "at least 1")
    _fails(capsys, ["run", "--micro-rows", "x"], "--micro-rows", "not a whole number")
    _fails(capsys, ["run", "--scale-rule", "nearest"], "--scale-rule", "invalid choice")
    _fails(capsys, ["run", "--macro-strategy", "nope"], "--macro-strategy", "invalid choice")
    _fails(capsys, ["demo", "--fmt", "e2m2"], "--fmt", "invalid choice")
    _fails(capsys, ["bench", "forward", "--threads", "0"], "--threads", "at least 1")


# ------------------------------------------------------------------ the bad inputs of CL-3.4
@pytest.mark.clause("CL-3.4", "FW-6.3")
def test_ppl_eval_windows_zero(capsys):
    _fails(capsys, ["models", "ppl", "--eval-windows", "0"], "argument --eval-windows", "at least 1")
    import numpy as np

    from torq_ref.model import ModelError
    from torq_ref.model.metrics import perplexity

    with pytest.raises(ModelError, match="no evaluation windows"):
        perplexity(None, np.zeros((0, 8), dtype=np.int64))


def _truncated_gguf(tmp_path, cut: int):
    pytest.importorskip("gguf")
    from test_model_gguf import write_tiny_gguf

    good = tmp_path / "good.gguf"
    write_tiny_gguf(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[: len(data) - cut])
    return bad, len(data)


@pytest.mark.clause("CL-3.4", "FW-5.8")
def test_truncated_gguf_to_import(tmp_path, capsys):
    bad, n = _truncated_gguf(tmp_path, 1000)
    _fails(capsys, ["models", "import", "--model", str(bad), "--out", str(tmp_path / "m")],
           f"truncated: expected {n} bytes, found {n - 1000}")
    assert not (tmp_path / "m").exists()


@pytest.mark.clause("CL-3.4", "FW-5.8")
def test_truncated_gguf_to_ppl(tmp_path, capsys):
    bad, n = _truncated_gguf(tmp_path, 1)
    _fails(capsys, ["models", "ppl", "--model", str(bad), "--cache", str(tmp_path)],
           f"truncated: expected {n} bytes, found {n - 1}")


@pytest.mark.clause("FW-5.8")
def test_gguf_extent_of_a_cut_header(tmp_path):
    from torq_ref.model import ModelError
    from torq_ref.model.gguf_import import check_not_truncated, gguf_extent

    bad, n = _truncated_gguf(tmp_path, 0)
    assert gguf_extent(bad) == n
    check_not_truncated(bad)                                   # complete: no error
    data = bad.read_bytes()
    for cut in (10, 30, 100):                                  # inside the header / the key-values
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelError, match=f"truncated: expected [0-9]+ bytes, found {cut}$"):
            check_not_truncated(bad)
        assert gguf_extent(bad) > cut
    bad.write_bytes(b"NOPE" + data[4:])
    with pytest.raises(ModelError, match="not a GGUF file"):
        gguf_extent(bad)


@pytest.mark.clause("CL-3.4")
def test_ppl_on_a_directory_without_config(tmp_path, capsys):
    _fails(capsys, ["models", "ppl", "--model", str(tmp_path)], str(tmp_path), "without config.json")


@pytest.mark.clause("CL-3.4", "CL-3.2")
def test_conformance_kernel_module_misspelt(capsys):
    _fails(capsys, ["conformance", "--kind", "quantize", "--kernel", "torq_ref.mxx:quantize"],
           "--kernel torq_ref.mxx:quantize", "no module named 'torq_ref.mxx'")


@pytest.mark.clause("CL-3.4", "CL-3.2")
def test_conformance_kernel_function_misspelt(capsys):
    _fails(capsys, ["conformance", "--kind", "quantize", "--kernel", "torq_ref.mx:quantise"],
           "--kernel torq_ref.mx:quantise", "has no attribute 'quantise'")


@pytest.mark.clause("CL-3.2")
def test_kernel_module_with_a_broken_import_keeps_its_traceback(tmp_path, monkeypatch):
    (tmp_path / "brokenkernel.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from torq_ref.conformance.plugin import load_kernel

    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        load_kernel("brokenkernel:f")


@pytest.mark.clause("CL-3.4", "CL-3.2")
def test_conformance_profile_option_misspelt(capsys):
    _fails(capsys, ["conformance", "--kind", "quantize", "--kernel", KERNEL, "--profile",
                    "ocp+unsigned-zeros"], "--profile ocp+unsigned-zeros", "unknown profile option",
           "known: unsigned-zero")


@pytest.mark.clause("CL-3.4")
def test_conformance_fmt_unknown(capsys):
    _fails(capsys, ["conformance", "--kind", "quantize", "--kernel", KERNEL, "--fmt", "e2m2"],
           "argument --fmt", "'e2m2'", "e2m1")
    from torq_ref.conformance import check
    from torq_ref.mx.formats import FormatError

    with pytest.raises(FormatError, match="unknown format e2m2; known: e2m1, .*nvfp4"):
        check("quantize", lambda x: x, fmt="e2m2")


@pytest.mark.clause("CL-3.4")
def test_ppl_act_fmt_unknown(capsys):
    _fails(capsys, ["models", "ppl", "--act-fmt", "e2m2"], "argument --act-fmt", "'e2m2'", "e2m1")
