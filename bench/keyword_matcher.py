"""A plain keyword matcher, the floor `bench/reader_speed.py --process` measures the reader against.

Standard library only, so that its process pays for nothing but Python itself: the same JSONL in as
`cxr-auditor parse-draft --batch` ({"id", "text"} a line), the same vocabulary (written to a JSON file
by the bench from `auditor.labels.FREE_TEXT_TERMS`), no negation, no hedges, no clauses; one JSON line
out per line in, with the id, the draft and every phrase found (label, span, offsets, "present").
Two ways to match, both plain: one compiled alternation of every phrase (the default, the fastest a
keyword matcher gets), or ``--per-term``, one word-bounded search per phrase, the way such matchers are
usually written.

Run: python bench/keyword_matcher.py [--per-term] VOCAB.json IN.jsonl OUT.jsonl
"""

import json
import re
import sys


def main() -> None:
    per_term = "--per-term" in sys.argv
    vocab_path, in_path, out_path = [a for a in sys.argv[1:] if a != "--per-term"]
    with open(vocab_path, encoding="utf-8") as fh:
        vocab = {term: label for term, label in json.load(fh).items() if label}
    words = sorted(vocab, key=len, reverse=True)
    if per_term:
        patterns = [
            (re.compile(r"\b" + re.escape(w).replace(r"\ ", r"\s+") + r"\b"), vocab[w]) for w in words
        ]
    else:
        rx = re.compile(r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in words) + r")\b")
    with open(in_path, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as out:
        for line in src:
            item = json.loads(line)
            text = item["text"]
            low = text.lower()
            if per_term:
                found = [(m, label) for p, label in patterns for m in p.finditer(low)]
            else:
                found = [(m, vocab[" ".join(m.group().split())]) for m in rx.finditer(low)]
            mentions = [
                {
                    "label": label,
                    "status": "present",
                    "span": text[m.start() : m.end()],
                    "start": m.start(),
                    "end": m.end(),
                }
                for m, label in found
            ]
            out.write(json.dumps({"id": item["id"], "draft": text, "mentions": mentions}) + "\n")


if __name__ == "__main__":
    main()
