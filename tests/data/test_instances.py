"""Instances for every target, masking statistics, pair labels, determinism, collate, sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CORPORA
from uer_ds.data import MMapDataset, PreprocessOptions, PretrainDataset, ShardedSampler, collate, preprocess
from uer_ds.data.masking import Masker
from uer_ds.data.batch import BatchInfo
from uer_ds.models.targets.base import Picked
from uer_ds.data.pairs import pair_index, pair_index_py
from uer_ds.tokenizers import build_tokenizer

T = 64


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer("bert", vocab_path=CORPORA / "vocab.txt")


@pytest.fixture(scope="module")
def make(tmp_path_factory, tok):
    """make(target, corpus, **options) -> PretrainDataset (preprocessed once per settings)."""
    cache = {}

    def build(target, corpus="reviews.txt", seq_length=T, **options):
        key = (target, corpus, seq_length, tuple(sorted(options.items())))
        if key not in cache:
            prefix = tmp_path_factory.mktemp("ds") / target
            preprocess(CORPORA / corpus, prefix, tok, PreprocessOptions(target, seq_length, **options), progress=False)
            cache[key] = prefix
        return PretrainDataset(cache[key])

    return build


def real(x):
    """The non-padding part of an instance."""
    n = int((x["seg"] > 0).sum())
    return x["src"][:n], x["seg"][:n], n


def restored(x):
    """src with masked positions given back their original ids."""
    src = x["src"].copy()
    picked = x["tgt"]["mlm"] != -100
    src[picked] = x["tgt"]["mlm"][picked]
    return src


# ---- layouts against the corpus ----------------------------------------------------------------
def test_mlm_windows_rebuild_every_document(make, tok):
    ds = make("mlm", dup_factor=2)
    data = MMapDataset(ds.prefix)
    stream = []
    assert len(ds) % 2 == 0
    for i in range(len(ds) // 2):  # copy 0
        x = ds[i]
        n = int((x["seg"] > 0).sum())
        assert set(x["seg"][:n]) == {1} and (x["src"][n:] == tok.pad_id).all()
        stream += restored(x)[:n].tolist()
    expected = [t for d in range(data.num_documents) for t in [tok.cls_id] + data.document(d).tolist() + [tok.sep_id]]
    assert stream == expected
    assert ds.meta["data_processor"] == "mlm" and ds.meta["tokenizer"] == tok.identity()


def test_mlm_full_sentences_fill_every_window(make, tok):
    ds = make("mlm", full_sentences=True, dup_factor=1)
    lengths = [int((ds[i]["seg"] > 0).sum()) for i in range(len(ds))]
    assert set(lengths[:-1]) == {T} and 0 < lengths[-1] <= T
    data = MMapDataset(ds.prefix)
    assert sum(lengths) == data.num_tokens + 2 * data.num_documents
    stream = [t for i in range(len(ds)) for t in restored(ds[i])[:lengths[i]].tolist()]
    assert stream == [t for d in range(data.num_documents) for t in [tok.cls_id] + data.document(d).tolist()
                      + [tok.sep_id]]


@pytest.mark.parametrize("full", [False, True])
def test_lm_predicts_every_token_once(make, tok, full):
    ds = make("lm", full_sentences=full)
    data = MMapDataset(ds.prefix)
    predicted = []
    for i in range(len(ds)):
        x = ds[i]
        src, seg, n = real(x)
        lm = x["tgt"]["lm"]
        assert (lm[:n - 1] == src[1:n]).all() and (lm[n:] == -100).all() and (lm[:n] != -100).all()
        predicted += lm[:n].tolist()
    if full:  # one stream of [CLS] doc [SEP]: everything after the first [CLS], once, in order
        stream = [t for d in range(data.num_documents) for t in [tok.cls_id] + data.document(d).tolist() + [tok.sep_id]]
        assert predicted == stream[1:]
    else:  # every token and each document's [SEP], once, in order
        assert predicted == [t for d in range(data.num_documents) for t in data.document(d).tolist() + [tok.sep_id]]


def test_bilm_targets_are_the_neighbours(make, tok):
    ds = make("bilm", seq_length=16)
    data = MMapDataset(ds.prefix)
    got = {}
    for i in range(len(ds)):
        x = ds[i]
        src, _, n = real(x)
        got.setdefault("src", []).extend(src.tolist())
        got.setdefault("fwd", []).extend(x["tgt"]["bilm"][:n, 0].tolist())
        got.setdefault("bwd", []).extend(x["tgt"]["bilm"][:n, 1].tolist())
        assert (x["tgt"]["bilm"][n:] == -100).all() and x["tgt"]["bilm"].shape == (16, 2)
    docs = [data.document(d).tolist() for d in range(data.num_documents)]
    assert got["src"] == [t for doc in docs for t in doc]
    assert got["fwd"] == [t for doc in docs for t in doc[1:] + [tok.sep_id]]
    assert got["bwd"] == [t for doc in docs for t in [tok.cls_id] + doc[:-1]]


def test_cls_instances(make, tok):
    ds = make("cls", "reviews_cls.txt", seq_length=32)
    lines = (CORPORA / "reviews_cls.txt").read_text(encoding="utf-8").splitlines()
    for i in (0, 1, 1999):
        x = ds[i]
        label, text = lines[i].split("\t")
        assert int(x["tgt"]["cls"]) == int(label)
        ids = tok.encode(text)[:30]
        src, seg, n = real(x)
        assert src.tolist() == [tok.cls_id] + ids + [tok.sep_id] and set(seg) == {1}
    assert len(ds) == 2000


@pytest.mark.parametrize("target", ["bert", "albert"])
def test_pairs_come_from_the_corpus(make, tok, target):
    ds = make(target, "reviews_bert.txt", dup_factor=1)
    data = MMapDataset(ds.prefix)
    doc_text = [data.document(d).tolist() for d in range(data.num_documents)]
    rows = ds.builder.rows
    for i in range(0, len(ds), 97):
        x = ds[i]
        src, seg, n = real(x)
        src = restored(x)[:n]
        assert src[0] == tok.cls_id and src[n - 1] == tok.sep_id and n <= T
        a_len = int((seg == 1).sum()) - 2
        a, b = src[1:1 + a_len].tolist(), src[a_len + 2:n - 1].tolist()
        assert src[a_len + 1] == tok.sep_id and (seg[a_len + 2:] == 2).all()
        doc = doc_text[rows[i, 5]]
        label = int(x["tgt"]["sp"])
        assert label == rows[i, 4]

        def inside(part, text):
            return any(text[k:k + len(part)] == part for k in range(len(text) - len(part) + 1))

        assert inside(a, doc) and (inside(b, doc) if target == "albert" or label == 0 else len(b) > 0)
        untruncated = data.sequences_tokens(rows[i, 0], rows[i, 2])
        if target == "bert" and label == 0 and len(untruncated) <= T - 3:
            assert a + b == untruncated.tolist()  # B follows A in the same document


def test_sop_swaps_exactly_when_labelled(make, tok):
    ds = make("albert", "reviews_bert.txt", dup_factor=1, short_seq_prob=0.0)
    data = MMapDataset(ds.prefix)
    for i in range(0, len(ds), 53):
        first, a_end, chunk_end, _, label, _ = ds.builder.rows[i]
        a = data.sequences_tokens(first, a_end).tolist()
        b = data.sequences_tokens(a_end, chunk_end).tolist()
        x = ds[i]
        src, seg, n = real(x)
        src = restored(x)[:n]
        if len(a) + len(b) <= T - 3:
            expected = [tok.cls_id] + (b if label else a) + [tok.sep_id] + (a if label else b) + [tok.sep_id]
            assert src.tolist() == expected


def test_pair_index_c_equals_python():
    rng = np.random.default_rng(0)
    doc_sizes = rng.integers(1, 9, size=300)
    lengths = rng.integers(1, 40, size=int(doc_sizes.sum())).astype(np.int32)
    doc_idx = np.concatenate([[0], np.cumsum(doc_sizes)]).astype(np.int64)
    for sop in (False, True):
        c = pair_index(doc_idx, lengths, 61, 0.1, 3, 1234, sop)
        py = pair_index_py(doc_idx, lengths, 61, 0.1, 3, 1234, sop)
        assert c.shape[0] > 300 and np.array_equal(c, py)
        # every chunk covers whole sentences of one document, A non-empty
        assert ((c[:, 1] > c[:, 0]) & (c[:, 2] >= c[:, 1])).all()
        assert ((doc_idx[c[:, 5]] <= c[:, 0]) & (c[:, 2] <= doc_idx[c[:, 5] + 1])).all()


def test_nsp_and_sop_label_balance():
    """Documents of two long sentences: every first chunk holds both, so NSP draws its label there
    (a random next puts the second sentence back as a chunk of its own, which is always random)."""
    docs = 4000
    lengths = np.full(2 * docs, 100, np.int32)
    doc_idx = np.arange(0, 2 * docs + 1, 2, dtype=np.int64)
    nsp = pair_index(doc_idx, lengths, 125, 0.0, 1, 7, False)
    first_chunks = nsp[nsp[:, 0] == doc_idx[nsp[:, 5]]]
    assert len(first_chunks) == docs
    assert abs(first_chunks[:, 4].mean() - 0.5) < 4 * 0.5 / np.sqrt(docs)
    random_next = first_chunks[:, 4] == 1
    assert len(nsp) == docs + random_next.sum()  # each random next leaves the second sentence for one more
    sop = pair_index(doc_idx, lengths, 125, 0.0, 1, 7, True)
    assert len(sop) == docs and abs(sop[:, 4].mean() - 0.5) < 4 * 0.5 / np.sqrt(docs)


# ---- masking -----------------------------------------------------------------------------------
def test_masking_statistics():
    """15 % of the candidates, of which 80 % [MASK], 10 % random, 10 % unchanged."""
    V, mask = 500, 4
    masker = Masker(mask, V, [0, 1, 2, 3, 4])
    rng = np.random.default_rng(0)
    counts = np.zeros(3)
    chosen = candidates_total = 0
    for _ in range(400):
        src = rng.integers(5, V, size=200)
        cand = rng.random(200) < 0.9
        out, tgt = masker(src, cand, rng)
        picked = tgt != -100
        assert not (picked & ~cand).any() and (tgt[picked] == src[picked]).all() and (out[~picked] == src[~picked]).all()
        assert picked.sum() == max(1, int(np.floor(0.15 * cand.sum() + 0.5)))
        chosen += picked.sum()
        candidates_total += cand.sum()
        counts += [(out[picked] == mask).sum(), ((out[picked] != mask) & (out[picked] != src[picked])).sum(),
                   (out[picked] == src[picked]).sum()]
        assert not np.isin(out[picked & (out != mask)], [0, 1, 2, 3]).any()
    n = counts.sum()
    assert abs(chosen / candidates_total - 0.15) < 0.002
    # 80/10/10 within 4 standard deviations (a random token may equal the original: 1/495)
    for share, p in zip(counts / n, (0.8, 0.1 * (1 - 1 / 495), 0.1 * (1 + 1 / 495))):
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (share, p)



def test_cls_mlm_instances_are_the_labelled_line_masked(make, tok):
    """UER-py's cls_mlm (`--target mlm cls`): each corpus line's label, and its [CLS] text [SEP] with 15% of
    the text's tokens masked (the originals in tgt mlm)."""
    ds = make("cls_mlm", "reviews_cls.txt", seq_length=32, dup_factor=1)
    lines = (CORPORA / "reviews_cls.txt").read_text(encoding="utf-8").splitlines()
    assert len(ds) == 2000
    masked = candidates = 0
    for i in range(0, 2000, 7):
        x = ds[i]
        label, text = lines[i].split("\t")
        assert int(x["tgt"]["cls"]) == int(label)
        n = int((x["seg"] > 0).sum())
        assert restored(x)[:n].tolist() == [tok.cls_id] + tok.encode(text)[:30] + [tok.sep_id]
        picked = x["tgt"]["mlm"] != -100
        assert not picked[[0, n - 1]].any()  # [CLS] and [SEP] are never masked
        masked += picked.sum()
        candidates += n - 2
    assert abs(masked / candidates - 0.15) < 0.02


def test_masking_through_the_dataset(make, tok):
    ds = make("mlm", dup_factor=1)
    masked = candidates = 0
    for i in range(0, len(ds), 3):
        x = ds[i]
        src, seg, n = real(x)
        picked = x["tgt"]["mlm"] != -100
        cand = (x["seg"] > 0) & ~np.isin(restored(x), [tok.cls_id, tok.sep_id, tok.pad_id])
        assert not (picked & ~cand).any()
        masked += picked.sum()
        candidates += cand.sum()
    assert abs(masked / candidates - 0.15) < 0.01


def test_whole_word_masking_masks_whole_words(tmp_path, tok):
    words = ["这本", "书", "的情节", "非常", "精彩", "what", "a", "charming", "prose"]
    rng = np.random.default_rng(3)
    lines = [" ".join(rng.choice(words, size=int(rng.integers(5, 30)))) for _ in range(300)]
    (tmp_path / "seg.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    preprocess(tmp_path / "seg.txt", tmp_path / "wwm", tok, PreprocessOptions("mlm", T, dup_factor=1,
                                                                             whole_word_masking=True), progress=False)
    ds = PretrainDataset(tmp_path / "wwm")
    data = MMapDataset(tmp_path / "wwm")
    assert data.has_word_starts
    for i in range(len(ds)):
        x = ds[i]
        line = lines[i]  # one window per line here
        word_tokens = [len(tok.encode(w)) for w in line.split()]
        picked = (x["tgt"]["mlm"] != -100)[1:1 + sum(word_tokens)]
        pos = 0
        for n in word_tokens:  # each word entirely masked or entirely not
            assert len(set(picked[pos:pos + n].tolist())) == 1, (line, picked)
            pos += n


def test_span_masking_makes_runs(make):
    ds = make("mlm", dup_factor=1, span_masking=True, span_geo_prob=0.2, span_max_length=10)
    runs = []
    for i in range(0, len(ds), 5):
        picked = (ds[i]["tgt"]["mlm"] != -100).astype(int)
        edges = np.diff(np.concatenate([[0], picked, [0]]))
        runs += (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()
    assert np.mean(runs) > 2.0 and max(runs) <= 20  # token masking would give runs of about 1.2


# ---- determinism -------------------------------------------------------------------------------
def test_instances_depend_only_on_seed_epoch_index(make):
    static = make("bert", "reviews_bert.txt", dup_factor=2)
    again = PretrainDataset(static.prefix)
    for i in (0, 5, len(static) - 1):
        a = static[i]
        static.set_epoch(3)
        b = static[i]
        static.set_epoch(0)
        assert_same(a, again[i])
        assert_same(a, b)  # static masking: every epoch the same
    other_seed = PretrainDataset(static.prefix, seed=99)
    assert len(other_seed) != len(static) or not all(same(static[i], other_seed[i]) for i in range(5))
    dynamic = PretrainDataset(static.prefix, dynamic_masking=True)
    a = dynamic[7]
    dynamic.set_epoch(1)
    b = dynamic[7]
    assert (a["tgt"]["sp"] == b["tgt"]["sp"]) and not np.array_equal(a["tgt"]["mlm"], b["tgt"]["mlm"])
    assert_same(restored_all(a), restored_all(b))  # the same pair, new masks


def restored_all(x):
    return {"src": restored(x), "seg": x["seg"], "tgt": {}}


def same(a, b) -> bool:
    return (np.array_equal(a["src"], b["src"]) and np.array_equal(a["seg"], b["seg"])
            and a["tgt"].keys() == b["tgt"].keys() and all(np.array_equal(a["tgt"][k], b["tgt"][k]) for k in a["tgt"]))


def assert_same(a, b):
    assert same(a, b)


def test_dataloader_workers_give_the_same_batches(make):
    ds = make("albert", "reviews_bert.txt", dup_factor=1)
    sampler = ShardedSampler(len(ds), 0, 1, seed=5)
    plain = [ds.collate([ds[i] for i in batch]) for batch in np.array_split(list(sampler)[:64], 8)]
    loader = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, num_workers=2, collate_fn=ds.collate)
    for want, got in zip(plain, loader):
        assert torch.equal(want["src"], got["src"]) and torch.equal(want["tgt"]["sp"], got["tgt"]["sp"])
        assert all(torch.equal(a, b) for a, b in zip(want["tgt"]["mlm"], got["tgt"]["mlm"]))  # Picked
        assert want["info"]._replace(packing=None) == got["info"]._replace(packing=None)
        packings = want["info"].packing, got["info"].packing
        assert (packings[0] is None) == (packings[1] is None)
        assert packings[0] is None or all(torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
                                          for a, b in zip(*packings))


def test_dataset_errors(tmp_path, make):
    ds = make("lm")
    with pytest.raises(IndexError, match="instance -1 out of range"):
        ds[-1]
    with pytest.raises(FileNotFoundError, match=r"nothing.json: no such file|nothing.idx: no such file"):
        PretrainDataset(tmp_path / "nothing")
    import shutil

    for suffix in (".bin", ".idx"):
        shutil.copy(ds.prefix + suffix, tmp_path / f"copy{suffix}")
    with pytest.raises(FileNotFoundError, match=r"copy.json: no such file \(written last"):
        PretrainDataset(tmp_path / "copy")
    other = make("bilm")
    shutil.copy(other.prefix + ".json", tmp_path / "copy.json")
    with pytest.raises(ValueError, match=r"copy.json belongs to another preprocess run"):
        PretrainDataset(tmp_path / "copy")


# ---- collate -----------------------------------------------------------------------------------
def test_collate_pads_and_trims():
    a = {"src": np.array([2, 7, 8, 3]), "seg": np.array([1, 1, 1, 1]),
         "tgt": {"mlm": np.array([-100, 7, -100, -100]), "sp": np.int64(1), "bilm": np.ones((4, 2), np.int64)}}
    b = {"src": np.array([2, 9, 3, 0, 0, 0]), "seg": np.array([1, 2, 2, 0, 0, 0]),
         "tgt": {"mlm": np.full(6, -100), "sp": np.int64(0), "bilm": np.full((6, 2), -100)}}
    batch = collate([a, b], pad_id=0)
    assert batch["src"].tolist() == [[2, 7, 8, 3], [2, 9, 3, 0]] and batch["src"].dtype == torch.long
    assert batch["seg"].tolist() == [[1, 1, 1, 1], [1, 2, 2, 0]]
    assert batch["tgt"]["sp"].tolist() == [1, 0] and batch["tgt"]["bilm"].shape == (2, 4, 2)
    assert batch["tgt"]["mlm"].tolist() == [[-100, 7, -100, -100], [-100] * 4]
    info = batch["info"]
    assert info._replace(packing=None) == BatchInfo(samples=2, tokens=7, padded=True,
                                                    predictions={"mlm": 1, "sp": 2, "bilm": 4})
    # the real tokens' places (the unpadded path's Packing): rows of 4 and 3 tokens in the (2, 4) batch
    assert info.packing.indices.tolist() == [0, 1, 2, 3, 4, 5, 6] and info.packing.cu_seqlens.tolist() == [0, 4, 7]
    assert info.packing.max_seqlen == 4 and info.packing.shape == (2, 4)
    padded = collate([b], pad_id=5, pad_to=8)
    assert padded["src"].tolist() == [[2, 9, 3, 0, 0, 0, 5, 5]]
    assert padded["info"].padded and not collate([a])["info"].padded
    with pytest.raises(ValueError, match=r"an instance has 4 non-padding positions, more than pad_to \(3\)"):
        collate([a], pad_to=3)


def test_collate_gives_masked_positions_as_a_fixed_number_of_rows():
    """picked={"mlm": k}: the MLM labels as Picked, B x k rows, the labelled positions first (in
    row-major order), then padding rows (index 0, label -100); the same positions as the dense labels."""
    rng = np.random.default_rng(3)
    instances = []
    for length in (9, 6, 4):
        labels = np.full(9, -100)
        labels[rng.choice(length, size=2, replace=False)] = rng.integers(5, 50, size=2)
        seg = np.zeros(9, np.int64)
        seg[:length] = 1
        instances.append({"src": np.arange(9), "seg": seg, "tgt": {"mlm": labels}})
    dense = collate(instances)["tgt"]["mlm"]
    picked = collate(instances, picked={"mlm": 3})["tgt"]["mlm"]
    assert isinstance(picked, Picked) and picked.index.shape == (9,) and picked.labels.shape == (9,)
    where = (dense.reshape(-1) != -100).nonzero().reshape(-1)
    assert picked.index[:6].tolist() == where.tolist()
    assert picked.labels[:6].tolist() == dense.reshape(-1)[where].tolist()
    assert picked.index[6:].tolist() == [0, 0, 0] and picked.labels[6:].tolist() == [-100] * 3
    with pytest.raises(ValueError, match="6 labelled positions in the batch, more than the bound of 3"):
        collate(instances, picked={"mlm": 1})


def test_dataset_bound_on_masked_positions_holds_for_every_masking(make):
    """The dataset's static bound (Masker.count(seq_length) per instance) covers what token, whole-word
    and span masking choose (an instance over the bound would fail collate)."""
    for options in ({}, {"whole_word_masking": True}, {"span_masking": True}):
        ds = make("mlm", **options)
        bound = ds.builder.masker.count(int(ds.meta["seq_length"]))
        most = max(int((np.asarray(ds[i]["tgt"]["mlm"]) != -100).sum()) for i in range(len(ds)))
        assert 0 < most <= bound, options
        batch = ds.collate([ds[i] for i in range(4)])
        assert batch["tgt"]["mlm"].index.shape == (4 * bound,)


# ---- sampler -----------------------------------------------------------------------------------
def test_sampler_shards_and_shuffles():
    n, w = 1003, 4
    shards = [list(ShardedSampler(n, r, w, seed=3)) for r in range(w)]
    union = [i for s in shards for i in s]
    assert all(len(s) == n // w for s in shards) and len(set(union)) == len(union) == n // w * w
    assert union != sorted(union)
    padded = [list(ShardedSampler(n, r, w, seed=3, drop_last=False)) for r in range(w)]
    assert set(i for s in padded for i in s) == set(range(n)) and all(len(s) == 251 for s in padded)
    s = ShardedSampler(n, 0, 1, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert sorted(list(s)) == sorted(first) and list(s) != first
    assert list(ShardedSampler(10, 0, 1, seed=3, shuffle=False)) == list(range(10))


def test_sampler_resume_and_world_size_change():
    n = 500
    full = list(ShardedSampler(n, 0, 1, seed=9))
    for w in (1, 2, 4):
        resumed = [list(ShardedSampler(n, r, w, seed=9, start=100)) for r in range(w)]
        merged = [resumed[g % w][g // w] for g in range(len(full) - 100)]
        assert merged == full[100:]
    s = ShardedSampler(n, 1, 2, seed=9)
    s.set_epoch(2, start=40)
    state = s.state_dict(consumed_samples=60)
    t = ShardedSampler(n, 1, 2, seed=9)
    t.load_state_dict(state)
    assert t.epoch == 2 and t.start == 60 and len(t) == (500 - 60) // 2
    with pytest.raises(ValueError, match="sampler state has num_samples 500, this sampler 400"):
        ShardedSampler(400, 0, 2, seed=9).load_state_dict(state)
    # a start that is not a multiple of the world size (a job resumed on another number of ranks)
    resumed = [list(ShardedSampler(n, r, 3, seed=9, start=7)) for r in range(3)]
    assert [resumed[g % 3][g // 3] for g in range(sum(map(len, resumed)))] == full[7: 500 // 3 * 3]
    with pytest.raises(ValueError, match=r"start has value 501: must be in \[0, 500\]"):
        ShardedSampler(n, 0, 2, seed=9, start=501)
