import numpy as np
import pytest
from transformers import AutoTokenizer

from polyrank.export.samples import parity_pairs
from polyrank.model_repository.pair_encoding import PairEncoder


@pytest.fixture(params=["tiny_modernbert_dir", "tiny_bert_dir"])
def checkpoint_dir(request):
    return request.getfixturevalue(request.param)


def test_pairs_encode_exactly_as_the_checkpoint_tokenizer_does(checkpoint_dir):
    hf_tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    encoder = PairEncoder.from_file(checkpoint_dir / "tokenizer.json", max_length=40)
    queries, documents = parity_pairs()

    encodings = encoder.encode(queries, documents)

    expected = hf_tokenizer(queries, documents, truncation="only_second", max_length=40)
    assert [e.ids for e in encodings] == expected["input_ids"]
    if "token_type_ids" in expected:
        assert [e.type_ids for e in encodings] == expected["token_type_ids"]
    assert max(len(e.ids) for e in encodings) == 40  # the long products were truncated


def test_mmbert_template_wraps_query_and_product(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=64)
    [encoding] = encoder.encode(["shoes"], ["running shoes"])
    bos, eos = encoder.tokenizer.token_to_id("<bos>"), encoder.tokenizer.token_to_id("<eos>")
    query_ids = encoder.tokenizer.encode("shoes", add_special_tokens=False).ids
    assert encoding.ids[0] == bos
    assert encoding.ids[1 : 1 + len(query_ids)] == query_ids
    assert encoding.ids[1 + len(query_ids)] == eos
    assert encoding.ids[-1] == eos


def test_only_the_product_side_is_truncated(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=24)
    query = "wireless headphones"
    query_ids = encoder.tokenizer.encode(query, add_special_tokens=False).ids
    [encoding] = encoder.encode([query], ["Sony over-ear headphones " * 20])
    assert len(encoding.ids) == 24
    assert encoding.ids[1 : 1 + len(query_ids)] == query_ids


def test_overlong_query_is_cut_to_half_of_max_length_instead_of_failing(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=32)
    query, product = "headphones " * 50, "Sony headphones"
    query_ids = encoder.tokenizer.encode(query, add_special_tokens=False).ids
    product_ids = encoder.tokenizer.encode(product, add_special_tokens=False).ids
    [encoding] = encoder.encode([query], [product])
    assert encoding.ids[1:17] == query_ids[:16]
    assert encoding.ids[18:-1] == product_ids  # the product keeps all its tokens


def test_padding_goes_to_the_longest_pair_only(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=128, pad_id=0)
    batch = encoder.encode_padded(["shoes", "shoes"], ["a", "Nike Air Zoom Pegasus 40 running shoe"])
    lengths = batch.attention_mask.sum(axis=1)
    assert batch.input_ids.shape == (2, lengths.max())
    assert batch.input_ids.dtype == np.int64
    assert (batch.input_ids[0, lengths[0] :] == 0).all()
    assert batch.real_tokens == lengths.sum()


def test_mismatched_lists_and_tiny_max_length_are_rejected(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=16)
    with pytest.raises(ValueError, match="2 queries for 1 documents"):
        encoder.encode(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_length"):
        PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=3)


def test_buckets_pad_a_request_up_to_the_narrowest_width_that_holds_it(tiny_modernbert_dir):
    encoder = PairEncoder.from_file(tiny_modernbert_dir / "tokenizer.json", max_length=64)
    encodings = encoder.encode(["shoes"] * 2, ["running shoes", "red running shoes for trail and road"])
    longest = max(len(e.ids) for e in encodings)
    assert encoder.pad(encodings).input_ids.shape[1] == longest
    wider = encoder.pad(encodings, buckets=[longest - 1, longest + 3, longest + 10])
    assert wider.input_ids.shape == (2, longest + 3)
    assert (wider.attention_mask.sum(axis=1) == [len(e.ids) for e in encodings]).all()
    assert (wider.input_ids[:, longest:] == encoder.pad_id).all()
    assert encoder.pad(encodings, buckets=[longest]).input_ids.shape[1] == longest
    assert encoder.pad(encodings, buckets=[2, 4]).input_ids.shape[1] == longest  # none holds it: its own width
