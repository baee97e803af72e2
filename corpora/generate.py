"""Write the project's sample corpus: invented bilingual (Chinese / English) book reviews.

Every title, phrase and template below was written for uer_ds; nothing is taken from another corpus.
The text is generated from them with a fixed seed, so the files are reproducible:

    python corpora/generate.py            # rewrites the corpus files next to this script
    python corpora/generate.py --vocab    # also retrains corpora/vocab.txt (needs `tokenizers`)

Sentiment is carried by the phrases, so a classifier can learn it (the quickstart's fine-tuning
reaches well above chance); mixed reviews and label noise keep it from being trivial.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20261122

BOOKS = ["《雾中的港口》", "《北方的河流》", "《星辰与尘埃》", "《晚风书简》", "《长夜漫游》", "《石头城记》",
         "《候鸟》", "《纸上的海》", "《灯下集》", "《远山回声》", "《第七个夏天》", "《钟表匠的女儿》",
         "《沙漠里的图书馆》", "《青瓦》", "《雪线以上》", "《旧船票》", "《月台》", "《无声的合唱》"]
ASPECTS = ["情节", "文笔", "人物", "结尾", "翻译", "装帧", "节奏", "对话", "细节", "开头", "结构", "语言"]
POSITIVE = ["精彩", "细腻", "动人", "紧凑", "流畅", "生动", "深刻", "温暖", "有趣", "扎实", "出色", "耐读"]
NEGATIVE = ["拖沓", "平淡", "混乱", "生硬", "空洞", "乏味", "粗糙", "做作", "冗长", "潦草", "单薄", "刻板"]
DEGREE = ["非常", "十分", "特别", "相当", "极其", "格外", "有些", "比较"]
POS_CLOSE = ["值得一读。", "推荐给朋友。", "读完很受启发。", "一口气读完了。", "会再读一遍。", "买得很值。",
             "是今年读过最好的书。", "五星推荐！"]
NEG_CLOSE = ["不推荐。", "读了一半就放下了。", "浪费时间。", "很失望。", "不值这个价钱。", "后悔买了。",
             "勉强读完。", "一星。"]
NEUTRAL = ["我是在周末读完这本书的。", "书是朋友送的。", "这本书一共有十二章。", "我在地铁上读了大半。",
           "作者以前写过散文。", "封面是蓝色的。", "这是我今年读的第五本小说。", "书里提到了很多地名。",
           "我读的是第二版。", "故事发生在一座海边小城。", "主人公是一位年轻的老师。", "全书大约三百页。"]
POS_TEMPLATES = ["{book}的{aspect}{degree}{adj}，{close}", "这本书的{aspect}{degree}{adj}。",
                 "{aspect}写得{adj}，让人印象很深。", "没想到{aspect}会这么{adj}。", "{book}在{aspect}上{degree}{adj}。"]
NEG_TEMPLATES = ["{book}的{aspect}{degree}{adj}，{close}", "这本书的{aspect}{degree}{adj}。",
                 "{aspect}写得{adj}，让人读不下去。", "没想到{aspect}会这么{adj}。", "{book}在{aspect}上{degree}{adj}。"]
EN_ASPECTS = ["plot", "prose", "translation", "ending", "pacing", "dialogue", "characters", "cover"]
EN_POSITIVE = ["gripping", "moving", "elegant", "vivid", "charming", "brilliant", "thoughtful", "delightful"]
EN_NEGATIVE = ["boring", "clumsy", "confusing", "shallow", "tedious", "sloppy", "predictable", "disappointing"]
EN_TEMPLATES = ["The {aspect} is {adj}.", "I found the {aspect} {adj}.", "Honestly, the {aspect} felt {adj}.",
                "What a {adj} {aspect}!"]


def sentence(rng: random.Random, positive: bool) -> str:
    if rng.random() < 0.15:
        words = EN_POSITIVE if positive else EN_NEGATIVE
        return rng.choice(EN_TEMPLATES).format(aspect=rng.choice(EN_ASPECTS), adj=rng.choice(words))
    template = rng.choice(POS_TEMPLATES if positive else NEG_TEMPLATES)
    return template.format(book=rng.choice(BOOKS), aspect=rng.choice(ASPECTS), degree=rng.choice(DEGREE),
                           adj=rng.choice(POSITIVE if positive else NEGATIVE),
                           close=rng.choice(POS_CLOSE if positive else NEG_CLOSE))


def review(rng: random.Random) -> tuple[int, list[str]]:
    """(label, sentences): 1 = positive.  Most sentences agree with the label; some do not."""
    label = rng.randrange(2)
    sentences = [rng.choice(NEUTRAL)] if rng.random() < 0.5 else []
    for _ in range(rng.randint(2, 6)):
        agree = rng.random() < 0.8
        sentences.append(sentence(rng, positive=(label == 1) == agree))
    if rng.random() < 0.4:
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(NEUTRAL))
    close = rng.choice(POS_CLOSE if label else NEG_CLOSE)
    sentences.append(close)
    if rng.random() < 0.05:  # label noise
        label = 1 - label
    return label, sentences


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab", action="store_true", help="also retrain corpora/vocab.txt")
    args = parser.parse_args()
    rng = random.Random(SEED)
    docs = [review(rng) for _ in range(3000)]
    pretrain, labelled = docs[:2000], docs[2000:]
    write(HERE / "reviews.txt", ["".join(s) for _, s in pretrain])  # one document per line
    bert_lines: list[str] = []
    for _, sentences in pretrain:  # one sentence per line, a blank line between documents
        bert_lines += sentences + [""]
    write(HERE / "reviews_bert.txt", bert_lines[:-1])
    write(HERE / "reviews_cls.txt", [f"{label}\t{''.join(s)}" for label, s in pretrain])
    splits = {"train": labelled[:700], "dev": labelled[700:850], "test": labelled[850:]}
    for name, rows in splits.items():
        write(HERE / "reviews_cls" / f"{name}.tsv", ["label\ttext_a"] + [f"{lab}\t{''.join(s)}" for lab, s in rows])
    write(HERE / "reviews_cls" / "test_nolabel.tsv", ["text_a"] + ["".join(s) for _, s in splits["test"]])
    if args.vocab:
        train_vocab()


def train_vocab() -> None:
    """A WordPiece vocabulary over the corpus, BERT's special tokens first ([PAD] = 0)."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train([str(HERE / "reviews.txt")], vocab_size=1200, min_frequency=1,
                    special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], limit_alphabet=2000)
    tokenizer.save_model(str(HERE))


if __name__ == "__main__":
    main()
