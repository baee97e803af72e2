"""Write a small invented DBQA set (NLPCC-DBQA's TSV: label, qid, text_a = question, text_b = sentence).

Every town, attribute and value below was made up for uer_ds.  Each question asks for one attribute
of one town; its five candidate sentences are the right fact, two facts of the same town about other
attributes and two facts of other towns about the same attribute, so ranking needs both the town
and the attribute (chance MRR with five candidates: 0.457).

    python corpora/generate_dbqa.py      # rewrites corpora/dbqa/{train,dev,test_nolabel}.tsv
"""
from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).parent / "dbqa"
SEED = 20261123

TOWNS = ["青石镇", "白沙湾", "柳溪村", "红枫岭", "云岩县", "南屿岛", "北坡镇", "桃源乡", "鹿鸣谷", "雁回城",
         "银杏镇", "落霞湾", "松涛岭", "梅林村", "望江城", "竹溪县"]
ATTRIBUTES = {
    "特产": ["茶叶", "蜂蜜", "柑橘", "竹编", "米酒", "蓝染布", "核桃", "瓷碗"],
    "节日": ["灯会", "龙舟赛", "花朝节", "丰收节", "风筝节", "庙会", "渔火节", "赏月会"],
    "河流": ["清水河", "长溪", "白龙江", "小桥河", "玉带河", "金沙河", "碧波河", "鸣泉溪"],
    "老街": ["石板街", "骑楼街", "水巷", "书院街", "铜匠街", "米市街", "灯笼巷", "茶馆街"],
}
QUESTIONS = ["{town}的{attr}是什么？", "{town}有什么{attr}？", "请问{town}的{attr}叫什么？"]
FACTS = ["{town}的{attr}是{value}。", "说起{town}的{attr}，人们都会想到{value}。", "{value}是{town}最有名的{attr}。"]


def fact(rng: random.Random, town: str, attr: str) -> str:
    """A sentence stating one attribute of one town; the value is drawn afresh each time, so no
    sentence is a memorisable answer: only the town and the attribute tell right from wrong."""
    return rng.choice(FACTS).format(town=town, attr=attr, value=rng.choice(ATTRIBUTES[attr]))


def question_rows(rng: random.Random) -> tuple[str, list[tuple[int, str]]]:
    town, attr = rng.choice(TOWNS), rng.choice(list(ATTRIBUTES))
    others = rng.sample([a for a in ATTRIBUTES if a != attr], 2)
    towns = rng.sample([t for t in TOWNS if t != town], 2)
    candidates = [(1, fact(rng, town, attr))]
    candidates += [(0, fact(rng, town, a)) for a in others]  # the right town, another attribute
    candidates += [(0, fact(rng, t, attr)) for t in towns]  # the right attribute, another town
    rng.shuffle(candidates)
    return rng.choice(QUESTIONS).format(town=town, attr=attr), candidates


def main() -> None:
    rng = random.Random(SEED)
    HERE.mkdir(exist_ok=True)
    qid = 0
    for name, count in (("train", 240), ("dev", 30), ("test_nolabel", 20)):
        labelled = name != "test_nolabel"
        lines = ["label\tqid\ttext_a\ttext_b" if labelled else "qid\ttext_a\ttext_b"]
        for _ in range(count):
            question, candidates = question_rows(rng)
            for label, text in candidates:
                lines.append("\t".join(([str(label)] if labelled else []) + [str(qid), question, text]))
            qid += 1
        (HERE / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
