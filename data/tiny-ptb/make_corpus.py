#!/usr/bin/env python3
"""Generates the tiny synthetic language-modelling corpus in data/tiny-ptb/ (Penn Treebank
format: one sentence per line, space-separated lower-case words, leading and trailing space).

The sentences come from a small probabilistic grammar, so a recurrent model can learn real
structure (agreement, word order, clause nesting) in seconds: the default run of
`cargo run --release --example train-penn-rnn` uses it. Deterministic: seed 1234.
Usage: python3 data/tiny-ptb/make_corpus.py (rewrites the three files next to it)."""
import os
import random

rng = random.Random(1234)

DET = ["the", "a", "every", "no"]
ADJ = ["small", "old", "red", "quiet", "busy", "happy"]
NOUN_SG = ["cat", "dog", "teacher", "child", "farmer", "bird", "river", "city"]
NOUN_PL = ["cats", "dogs", "teachers", "children", "farmers", "birds", "rivers", "cities"]
VERB_SG = ["sees", "likes", "follows", "finds", "helps", "watches"]
VERB_PL = ["see", "like", "follow", "find", "help", "watch"]
INTRANS_SG = ["sleeps", "runs", "sings", "waits"]
INTRANS_PL = ["sleep", "run", "sing", "wait"]
PREP = ["near", "behind", "under", "with"]
ADV = ["today", "again", "slowly", "often"]


def noun_phrase(plural, depth=0):
    words = ["the" if plural and rng.random() < 0.5 else rng.choice(DET if not plural else ["the", "some", "many"])]
    if rng.random() < 0.4:
        words.append(rng.choice(ADJ))
    words.append(rng.choice(NOUN_PL if plural else NOUN_SG))
    if depth < 1 and rng.random() < 0.2:
        words += [rng.choice(PREP)] + noun_phrase(rng.random() < 0.5, depth + 1)
    return words


def clause(depth=0):
    plural = rng.random() < 0.5
    words = noun_phrase(plural)
    if rng.random() < 0.6:
        words.append(rng.choice(VERB_PL if plural else VERB_SG))
        words += noun_phrase(rng.random() < 0.5)
    else:
        words.append(rng.choice(INTRANS_PL if plural else INTRANS_SG))
    if rng.random() < 0.3:
        words.append(rng.choice(ADV))
    if depth < 1 and rng.random() < 0.25:
        words += ["and"] + clause(depth + 1)
    return words


def write(name, n):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(" " + " ".join(clause()) + " \n")


write("ptb.train.txt", 3000)
write("ptb.valid.txt", 300)
write("ptb.test.txt", 300)
