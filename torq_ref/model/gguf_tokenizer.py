"""Tokenizers rebuilt from GGUF metadata with the ``tokenizers`` library (spec/FW.md FW-5.3, FW-5.6).

A GGUF file carries its vocabulary as metadata (``tokenizer.ggml.*``), not as a tokenizer.json.
Two kinds are supported, built so that the ids equal those of transformers' GGUF loader
(``AutoTokenizer.from_pretrained(dir, gguf_file=...)``), the independent implementation the slow
tests compare with:

* ``tokenizer.ggml.model == "gpt2"``: byte-level BPE (SmolLM2, Qwen2). Tokens outside the GPT-2
  byte alphabet are respelled byte-wise; the pre-tokenizer follows ``tokenizer.ggml.pre``: the
  Qwen2 regex split then byte mapping for ``qwen2``, GPT-2's own byte-level split otherwise.
* ``tokenizer.ggml.model == "llama"`` for architecture ``gemma3``: SentencePiece-style BPE with
  byte fallback. Spaces become U+2581 in a normalizer; whitespace-only tokens holding a space are
  respelled as that many U+2581; the file has no merges, so they are derived from the vocabulary:
  every split of a token into two vocabulary pieces is a merge, ranked by the token's position in
  the file (earlier first).

In both, tokens typed CONTROL (3) become special added tokens and USER_DEFINED (4) ones plain
added tokens, matched whole in the raw text.
"""
from __future__ import annotations

from .errors import ModelError, UnsupportedModelError

CONTROL, USER_DEFINED = 3, 4
SP_SPACE = "\u2581"

#: the split regex of Qwen2's byte-level pre-tokenizer (contractions, letters, single digits,
#: punctuation runs, newlines, other whitespace)
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
#: tokenizer.ggml.pre -> split regex (None: GPT-2's built-in byte-level split)
PRE_SPLITS = {"qwen2": QWEN2_SPLIT, "deepseek-r1-qwen": QWEN2_SPLIT,
              "smollm": None, "gpt2": None, "default": None, None: None}


def field(reader, key, default=None):
    """A GGUF metadata value (``reader.fields[key].contents()``), or ``default`` when absent."""
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _metadata(reader) -> dict:
    tokens = field(reader, "tokenizer.ggml.tokens")
    if not tokens:
        raise ModelError("the GGUF holds no tokenizer.ggml.tokens")
    tokens = list(tokens)
    types = list(field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    if len(types) != len(tokens):
        raise ModelError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
    return {"model": field(reader, "tokenizer.ggml.model"), "pre": field(reader, "tokenizer.ggml.pre"),
            "tokens": tokens, "types": types, "merges": field(reader, "tokenizer.ggml.merges"),
            "unk": field(reader, "tokenizer.ggml.unknown_token_id")}


def _add_typed_tokens(tk, tokens, types, allowed=None) -> None:
    """CONTROL tokens as special added tokens (only those spelled in ``allowed`` when given),
    USER_DEFINED tokens already in the vocabulary as plain added tokens (FW-5.3)."""
    from tokenizers import AddedToken

    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
               if ty == CONTROL and (allowed is None or set(t) <= allowed)]
    if special:
        tk.add_special_tokens(special)
    vocab = tk.get_vocab()
    plain = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types)
             if ty == USER_DEFINED and t in vocab]
    if plain:
        tk.add_tokens(plain)


def byte_level_bpe(meta: dict):
    """FW-5.3: the byte-level BPE of a ``gpt2`` GGUF vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = meta["pre"]
    if pre not in PRE_SPLITS:
        raise UnsupportedModelError(
            f"GGUF pre-tokenizer {pre!r} is not supported (supported: {sorted(k for k in PRE_SPLITS if k)})")
    if not meta["merges"]:
        raise ModelError("a byte-level BPE GGUF needs tokenizer.ggml.merges")
    spell = bytes_to_unicode()
    alphabet = set(spell.values())
    vocab = {}
    for i, tok in enumerate(meta["tokens"]):
        key = tok if set(tok) <= alphabet else "".join(spell[b] for b in tok.encode("utf-8"))
        vocab[key] = i                              # a later duplicate wins, as in transformers
    merges = [tuple(m.split(" ")) for m in meta["merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                              end_of_word_suffix="", fuse_unk=False))
    split = PRE_SPLITS[pre]
    if split is None:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    _add_typed_tokens(tk, meta["tokens"], meta["types"], allowed=alphabet)
    return tk


def derived_merges(tokens: list[str]) -> list[tuple[str, str]]:
    """FW-5.6: merges implied by a SentencePiece vocabulary without merges. Every split of a token
    into two vocabulary pieces is a merge; merges rank by the merged token's position in the file
    (earlier first), then by longer left, then longer right piece; the splits of one token are
    listed by the ids of (left, right)."""
    vocab = {t: i for i, t in enumerate(tokens)}     # a later duplicate wins
    ranked = []                                      # (rank key, left, right)
    for tok in dict.fromkeys(tokens):                # first-occurrence order
        score = -vocab[tok]
        local = [(tok[:j], tok[j:]) for j in range(1, len(tok)) if tok[:j] in vocab and tok[j:] in vocab]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        ranked.extend(((score, len(l), len(r)), l, r) for l, r in local)
    ranked.sort(key=lambda e: e[0], reverse=True)    # stable: ties keep their listed order
    return [(l, r) for _, l, r in ranked]


def sentencepiece_bpe(meta: dict):
    """FW-5.6: Gemma's SentencePiece-style BPE with byte fallback from a ``llama`` GGUF vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokens = [SP_SPACE * len(t) if " " in t and not t.strip() else t for t in meta["tokens"]]
    unk = meta["unk"]
    unk_token = tokens[unk] if unk is not None and 0 <= unk < len(tokens) else "<unk>"
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=derived_merges(tokens), dropout=None,
                              unk_token=unk_token, fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Replace(" ", SP_SPACE)
    tk.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tk.decoder = decoders.Sequence([decoders.Replace(SP_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    _add_typed_tokens(tk, meta["tokens"], meta["types"])
    return tk


def gguf_tokenizer(reader, architecture: str | None = None):
    """A ``tokenizers.Tokenizer`` for the GGUF's vocabulary (FW-5.3, FW-5.6)."""
    meta = _metadata(reader)
    arch = architecture or field(reader, "general.architecture")
    if meta["model"] == "gpt2":
        return byte_level_bpe(meta)
    if meta["model"] == "llama" and arch == "gemma3":
        return sentencepiece_bpe(meta)
    raise UnsupportedModelError(
        f"GGUF tokenizer.ggml.model {meta['model']!r} for architecture {arch!r} is not supported "
        f"(byte-level 'gpt2', or 'llama' SentencePiece for gemma3)")


def add_bos(reader) -> bool:
    """FW-6.5: whether windows start with BOS: ``tokenizer.ggml.add_bos_token``; absent, true for a
    SentencePiece (``llama``) vocabulary, as llama.cpp and transformers assume, else false."""
    flag = field(reader, "tokenizer.ggml.add_bos_token")
    if flag is None:
        return field(reader, "tokenizer.ggml.model") == "llama"
    return bool(flag)
