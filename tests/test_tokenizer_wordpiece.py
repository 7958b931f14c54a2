import pytest
import torch

from lxmert.tokenization import LxmertTokenizer
from lxmert.wordpiece import train_wordpiece

CORPUS = [
    "A red cube is left of the blue sphere.",
    "How many green cylinders are there?",
    "The small metal ball is behind the rubber cube!",
    "Is there a yellow thing right of the large cylinder?",
] * 4
QUERIES = [
    "How many RED cubes are left of the sphère?",  # upper case and an accent: uncased BERT folds both
    "zebra quagga. Cube!",  # unknown words become one [UNK] each
    "a",
    "is the small rubber cylinder behind the large metal sphere and left of the green cube",  # gets truncated
    "",
    "the [MASK] is Red",  # special tokens in the text stay whole
]


@pytest.fixture
def bert_layout_vocab(tmp_path):
    """A vocab.txt laid out like BERT's: [PAD]=0, [unused*], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103."""
    words = ["the", "cube", "red", "is", "left", "of", "sphere", "how", "many", "are", "?", ".", "!", "a"]
    pieces = ["cyl", "##ind", "##er", "##s", "z", "##e"]
    tokens = [
        "[PAD]",
        *(f"[unused{i}]" for i in range(99)),
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *pieces,
    ]
    path = tmp_path / "bert" / "vocab.txt"
    path.parent.mkdir()
    path.write_text("\n".join(tokens) + "\n")
    return path


def test_special_ids_are_read_from_the_vocab(bert_layout_vocab):
    tok = LxmertTokenizer(bert_layout_vocab)
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert ids == (0, 100, 101, 102, 103)
    assert tok.vocab_size == 104 + 14 + 6
    assert tok.tokenize("Cylinders?") == ["cyl", "##ind", "##er", "##s", "?"]
    assert tok.decode(tok("the red cylinders")["input_ids"][0]) == "the red cylinders"
    assert tok("the [MASK] cube")["input_ids"][0].tolist() == [101, 104, 103, 105, 102]


def test_ids_equal_transformers_bert_tokenizer(tmp_path, bert_layout_vocab):
    transformers = pytest.importorskip("transformers")
    trained = train_wordpiece(CORPUS, vocab_size=120, out_path=tmp_path)
    for vocab in (bert_layout_vocab, trained.vocab_file):
        ours = LxmertTokenizer(vocab)
        # transformers 5 ignores a vocab_file= keyword; loading the local directory reads vocab.txt.
        theirs = transformers.BertTokenizerFast.from_pretrained(str(vocab.parent))
        for padding, hf_padding in ((True, True), ("max_length", "max_length")):
            got = ours(QUERIES, max_length=12, padding=padding)
            want = theirs(QUERIES, max_length=12, truncation=True, padding=hf_padding, return_tensors="pt")
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                assert torch.equal(got[name], want[name]), f"{vocab}: {name} differs with padding={padding}"
        for text in QUERIES:
            assert ours.tokenize(text) == theirs.tokenize(text)


def test_default_length_is_twenty_with_cls_and_sep_kept(tmp_path):
    tok = train_wordpiece(CORPUS, vocab_size=200, out_path=tmp_path / "vocab.txt")
    long_text = " ".join(["the red cube"] * 20)
    batch = tok([long_text, "a cube"])
    assert batch["input_ids"].shape == (2, 20)
    assert batch["input_ids"][0, 0] == tok.cls_token_id and batch["input_ids"][0, -1] == tok.sep_token_id
    assert batch["attention_mask"][1].tolist() == [1] * 4 + [0] * 16
    assert batch["input_ids"][1, 4:].eq(tok.pad_token_id).all()
    assert tok("a cube", padding="max_length")["input_ids"].shape == (1, 20)
    with pytest.raises(ValueError, match="equal length"):
        tok(["a", "a cube"], padding=False)


def test_trained_vocab_puts_specials_first_and_round_trips(tmp_path):
    tok = train_wordpiece(CORPUS, vocab_size=150, out_path=tmp_path / "v" / "vocab.txt")
    assert tok.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok.vocab_size <= 150
    # Every word of the corpus is covered: nothing in it maps to [UNK].
    assert tok.unk_token_id not in tok(CORPUS)["input_ids"]
    tok.save(tmp_path / "saved")
    again = LxmertTokenizer.from_dir(tmp_path / "saved")
    assert again.vocab == tok.vocab
    assert torch.equal(again(QUERIES)["input_ids"], tok(QUERIES)["input_ids"])


def test_bad_vocab_is_refused(tmp_path):
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ValueError, match=r"lacks the special tokens \['\[CLS\]', '\[SEP\]', '\[MASK\]'\]"):
        LxmertTokenizer(tmp_path / "vocab.txt")
    with pytest.raises(FileNotFoundError, match="no vocabulary file"):
        LxmertTokenizer.from_dir(tmp_path / "nowhere")
