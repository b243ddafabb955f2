"""The rule reader's language as data: cue words labelled by role, and the finding phrases the shared
vocabulary cannot hold. One line is one cue; people extend these lists, not the reader's code.

Roles are ConText's (Harkema et al., J Biomed Inform 2009; pyConTextNLP; medspaCy):
- FORWARD: the cue governs a finding phrase after it in its clause ("no effusion");
- BACKWARD: the phrase before it ("the effusion has resolved");
- BIDIRECTIONAL: either ("questionable nodule", "nodule, questionable", "atelectasis versus pneumonia");
- PSEUDO: looks like a cue but is none ("no change in the effusion"), and shields the phrase from an
  older cue further back;
- TERMINATE: ends every cue's scope ("but", "however").
Meanings: NEGATED and RESOLVED read ``absent`` (RESOLVED: it was there before and is not now, so the
draft is about change and never a normal study); POSSIBLE reads ``uncertain``; HYPOTHETICAL (purpose,
indication, limitation, recommendation) and HISTORICAL (history of) assert nothing about this image, so
the phrase is not a mention at all.

A phrase is lower case. A space matches any run of whitespace; "(a|b)" and "?" work as in regular
expressions (groups need not be marked non-capturing); everything else is literal. Word boundaries
are added at both ends. Where a list comes from a published source, the source is named above it.
"""

# ruff: noqa: E501  (one cue is one line, however long its phrase)
from __future__ import annotations

from typing import Final, Literal, NamedTuple

from auditor.labels import Label

Role = Literal["forward", "backward", "bidirectional", "pseudo", "terminate"]
Meaning = Literal["negated", "resolved", "possible", "hypothetical", "historical", "none"]

FORWARD: Final = "forward"
BACKWARD: Final = "backward"
BIDIRECTIONAL: Final = "bidirectional"
PSEUDO: Final = "pseudo"
TERMINATE: Final = "terminate"

NEGATED: Final = "negated"
RESOLVED: Final = "resolved"
POSSIBLE: Final = "possible"
HYPOTHETICAL: Final = "hypothetical"
HISTORICAL: Final = "historical"
NONE: Final = "none"


class Cue(NamedTuple):
    phrase: str
    meaning: Meaning
    role: Role


_NOT_SEEN = (
    "(seen|identified|present|evident|visualized|visible|demonstrated|appreciated|noted|detected|apparent"
    "|shown|delineated|discernible|perceived)"
)

# fmt: off
CUES: Final[tuple[Cue, ...]] = (
    # ---- negation. NegEx pre-negation triggers (Chapman et al., J Biomed Inform 2001) and the
    # medspaCy / pyConTextNLP DEFINITE_NEGATED_EXISTENCE forward rules.
    Cue("no", NEGATED, FORWARD),
    Cue("not", NEGATED, FORWARD),
    Cue("without", NEGATED, FORWARD),
    Cue("negative for", NEGATED, FORWARD),
    Cue("free of", NEGATED, FORWARD),
    Cue("clear of", NEGATED, FORWARD),
    Cue("clear", NEGATED, FORWARD),  # pyConTextNLP: "clear" PROBABLE_NEGATED_EXISTENCE
    Cue("absence of", NEGATED, FORWARD),
    Cue("absent", NEGATED, BIDIRECTIONAL),
    Cue("lack of", NEGATED, FORWARD),
    Cue("neither", NEGATED, FORWARD),
    Cue("nor", NEGATED, FORWARD),
    Cue("rather than", NEGATED, FORWARD),
    Cue("no (other|additional)", NEGATED, FORWARD),
    Cue("unremarkable for", NEGATED, FORWARD),
    Cue("fails to (reveal|demonstrate|show)", NEGATED, FORWARD),
    Cue("rules out", NEGATED, FORWARD),
    Cue("ruled out", NEGATED, BIDIRECTIONAL),
    # negation after the phrase: medspaCy BACKWARD rules ("is not identified", "are not seen", "are not
    # evident", "are ruled out", "unlikely"), CheXpert labeler ("XXX is not appreciated"), with the
    # adverbs radiologists put between ("not well seen", "not definitely identified").
    Cue(f"not ([a-z]+( |-))?{_NOT_SEEN}", NEGATED, BACKWARD),
    Cue("excluded", NEGATED, BACKWARD),
    Cue("unlikely", NEGATED, BACKWARD),
    # ---- prior-study context: present before, not now. medspaCy ("resolved", "now resolved", "no longer
    # present"), pyConTextNLP ("no longer (seen|noted|visualized)", "resolution of"), CheXpert labeler
    # ("XXX has resolved", "XXX with interval resolution", "cleared XXX", "removal of XXX").
    Cue("resolved", RESOLVED, BIDIRECTIONAL),
    Cue("(has|have) (now )?(completely )?(resolved|cleared)", RESOLVED, BACKWARD),
    Cue("(is|are) (now )?(resolved|cleared|gone)", RESOLVED, BACKWARD),
    Cue("cleared", RESOLVED, BACKWARD),
    Cue(f"no longer ((be|been) )?([a-z]+ )?{_NOT_SEEN}", RESOLVED, BACKWARD),
    Cue("with (interval )?resolution", RESOLVED, BACKWARD),
    Cue("with (interval |complete )?resolution of", RESOLVED, FORWARD),
    Cue("no longer", RESOLVED, FORWARD),
    Cue("(interval |complete )?resolution of", RESOLVED, FORWARD),
    Cue("clearing of", RESOLVED, FORWARD),
    Cue("removal of", RESOLVED, FORWARD),
    Cue("no residual", RESOLVED, FORWARD),
    Cue("no (recurrent|recurrence of)", RESOLVED, FORWARD),
    # ---- uncertainty. NegEx possible-existence triggers, medspaCy POSSIBLE_EXISTENCE ("possible",
    # "suspicious for", "concerning for", "worrisome for", "suggestive of", "might be"), pyConTextNLP
    # ("questionable", "equivocal", "versus", "cannot exclude", "differential diagnosis"), CheXpert
    # labeler uncertainty ("may|might|would|could", "question", "concern|suspicion for", "suspect").
    Cue("possible", POSSIBLE, BIDIRECTIONAL),
    Cue("possibly", POSSIBLE, FORWARD),
    # not hedges here: "likely", "probable" (pyConTextNLP PROBABLE_EXISTENCE, nearer affirmed); coders of
    # real reports tag "likely small effusion" as an effusion.
    Cue("question( of)?", POSSIBLE, FORWARD),
    Cue("questionable", POSSIBLE, BIDIRECTIONAL),
    Cue("questioned", POSSIBLE, BACKWARD),
    Cue("(suspicious|suspicion|concern|concerning|concerned|worrisome|worry) (for|of|about)", POSSIBLE, FORWARD),
    Cue("suspected", POSSIBLE, BIDIRECTIONAL),
    Cue("suspect", POSSIBLE, FORWARD),
    Cue("may", POSSIBLE, FORWARD),
    Cue("might", POSSIBLE, FORWARD),
    Cue("could", POSSIBLE, FORWARD),
    Cue("(cannot|can not|can't|could not|couldn't|unable to) (exclude|rule out|be sure of)", POSSIBLE, FORWARD),
    Cue("(cannot|can not|can't|could not|couldn't) be (entirely |completely |totally |definitely )?(excluded|ruled out)", POSSIBLE, BACKWARD),
    Cue("not ((be|been) )?(entirely |completely |totally |definitely )?(excluded|ruled out)", POSSIBLE, BACKWARD),
    Cue("a (possibility|consideration|concern)", POSSIBLE, BACKWARD),
    Cue("(difficult to exclude|in the differential)", POSSIBLE, BACKWARD),
    Cue("differential( diagnosis| considerations)?( (includes?|would include))?", POSSIBLE, FORWARD),
    Cue("equivocal", POSSIBLE, BIDIRECTIONAL),
    Cue("indeterminate", POSSIBLE, FORWARD),
    Cue("presumed", POSSIBLE, FORWARD),
    Cue("possibility of", POSSIBLE, FORWARD),
    Cue("suggestive of", POSSIBLE, FORWARD),
    Cue("suggestion of", POSSIBLE, FORWARD),
    Cue("no (suggestion|signs?|findings?) (of|to suggest)", NEGATED, FORWARD),
    Cue("(not|nothing) (suggestive of|to suggest)", NEGATED, FORWARD),
    Cue("(suggests|suggesting)", POSSIBLE, FORWARD),
    Cue("versus", POSSIBLE, BIDIRECTIONAL),
    Cue("vs", POSSIBLE, BIDIRECTIONAL),
    # ---- purpose, indication and limitation: the finding is the object of a test, a recommendation or a
    # limited look, and nothing is said of this image. pyConTextNLP INDICATION / FUTURE ("evaluate for",
    # "evaluation of|for", "assessment for", "rule out", "is more sensitive", "higher sensitivity for",
    # "study for detection", "if there is concern for", "at risk for"), medspaCy HYPOTHETICAL ("if",
    # "risk of"), NegEx ("to exclude", "rule out").
    Cue("(evaluate|evaluated|evaluation|evaluating|assess|assessed|assessment|examination|exam|study|search|look|looking|screening|screen|test|testing|check|checked) for", HYPOTHETICAL, FORWARD),
    Cue("(further )?(evaluation|assessment) of (possible|suspected|questionable)", HYPOTHETICAL, FORWARD),
    Cue("to (exclude|rule out|detect|identify|look for|search for|confirm|evaluate for|assess for|screen for)", HYPOTHETICAL, FORWARD),
    Cue("exclude", HYPOTHETICAL, FORWARD),
    Cue("rule out", HYPOTHETICAL, FORWARD),
    Cue("r/o", HYPOTHETICAL, FORWARD),
    Cue("(detection|detecting|identification|identifying) of", HYPOTHETICAL, FORWARD),
    Cue("(detecting|identifying)", HYPOTHETICAL, FORWARD),
    Cue("(is|are) more sensitive", HYPOTHETICAL, FORWARD),
    Cue("(higher|greater|more) sensitivity", HYPOTHETICAL, FORWARD),
    Cue("if", HYPOTHETICAL, FORWARD),
    Cue("if any", POSSIBLE, BIDIRECTIONAL),
    Cue("in case of", HYPOTHETICAL, FORWARD),
    Cue("(at )?risk (of|for)", HYPOTHETICAL, FORWARD),
    Cue("(could|may|might|can|would) (obscure|mask|hide)", HYPOTHETICAL, FORWARD),
    Cue("(limits|limiting|limited) (evaluation|assessment|visualization|detection)( of| for)?", HYPOTHETICAL, FORWARD),
    # ---- history: medspaCy / pyConTextNLP HISTORICAL ("history of", "h/o", "past history")
    Cue("(past |prior |remote |clinical |known )?(history|hx) of", HISTORICAL, FORWARD),
    Cue("h/o", HISTORICAL, FORWARD),
    # ---- pseudo-cues. NegEx pseudo-negation ("no change", "no increase", "no suspicious change",
    # "not necessarily", "not cause"), pyConTextNLP ("no change in", "no significant interval change",
    # "not significantly changed"), CheXpert labeler ("no new XXX" reads uncertain there; here "no new"
    # is plain negation, as in medspaCy).
    Cue("(no|without) ((significant|interval|appreciable|definite|apparent|substantial|suspicious|gross|further|marked|radiographic) )*(change|increase|decrease|progression|growth|worsening|improvement)", NONE, PSEUDO),
    Cue("not ((significantly|substantially|markedly|appreciably) )?(changed|increased|decreased|worsened)", NONE, PSEUDO),
    Cue("not (only|necessarily|cause|certain whether|extend)", NONE, PSEUDO),
    # ---- scope ends. NegEx / ConText termination terms, medspaCy TERMINATE ("but", "however",
    # "nevertheless", "except", "though", "although", "aside from", "apart from"), and relative clauses
    # ("which", "whereas", "while"). "secondary to" is not one here: "may be secondary to X" is a hedge.
    Cue("but", NONE, TERMINATE),
    Cue("however", NONE, TERMINATE),
    Cue("nevertheless", NONE, TERMINATE),
    Cue("although", NONE, TERMINATE),
    Cue("though", NONE, TERMINATE),
    Cue("except( for)?", NONE, TERMINATE),
    Cue("aside from", NONE, TERMINATE),
    Cue("apart from", NONE, TERMINATE),
    Cue("other than", NONE, TERMINATE),
    Cue("whereas", NONE, TERMINATE),
    Cue("otherwise", NONE, TERMINATE),
    Cue("which", NONE, TERMINATE),
    Cue("while", NONE, TERMINATE),
    Cue(", and", NONE, TERMINATE),
    Cue("and (?=there|the (heart|cardiac|lungs?))", NONE, TERMINATE),
)
# fmt: on

# ---- finding phrases the shared vocabulary cannot hold --------------------------------------------
# (pattern, label). ``None`` consumes the phrase for no label, as the vocabulary's dropped terms do.


class Target(NamedTuple):
    phrase: str
    label: Label | None


_OPACITY_HEAD = (
    "(opacity|opacities|opacification|density|densities|infiltrates?|infiltration|consolidations?"
    "|airspace disease|air space disease)"
)
# fmt: off
TARGETS: Final[tuple[Target, ...]] = (
    # Pneumothorax in other words. Fleischner Society glossary (Hansell et al., Radiology 2008):
    # "pneumothorax: air in the pleural space"; its sign, the visceral pleural line with absent lung
    # markings beyond it. (Hydropneumothorax, gas and fluid, is its own heading in the coding of real
    # reports, MeSH, and is left out: the word boundary keeps "pneumothorax" inside it from matching.)
    Target("pleural (air|gas)( collections?)?", Label.PNEUMOTHORAX),
    Target("(free )?(air|gas)( collections?)? (in|within|into) the (left |right )?pleural (space|cavity)", Label.PNEUMOTHORAX),
    Target("(apical |apex )?(lucency|lucencies|hyperlucency) (without|devoid of|with absent|with no|lacking) (lung|pulmonary|vascular|bronchovascular) markings", Label.PNEUMOTHORAX),
    Target("(absent|absence of) (lung|pulmonary|vascular|bronchovascular) markings", Label.PNEUMOTHORAX),
    Target("visceral pleural (line|edge|margin)", Label.PNEUMOTHORAX),
    # "Nodular" as a descriptor (Fleischner glossary: "nodular" and "reticulonodular" describe a pattern
    # of opacities): nodular qualifying an opacity, density or infiltrate is an opacity. "Nodule" or
    # "mass" as the head noun stays a nodule (the vocabulary), calcified or not, as does "nodular" alone.
    Target(f"(reticulo|micro|fibro|reticular-)?nodular ([a-z]+ )?{_OPACITY_HEAD}", Label.LUNG_OPACITY_CONSOLIDATION),
    # masses and nodules outside the lung (the label is a lung nodule or mass)
    Target("(thyroid|breast|chest wall|soft tissue|soft-tissue|neck|abdominal|upper abdominal|renal|hepatic|adrenal|axillary|subcutaneous) (nodules?|mass|masses)", None),
    Target("nipple (shadows?|markers?)", None),
)
# fmt: on

# Words that put a denial in the context of an earlier study ("the previously noted nodule is not seen"):
# such a draft is about change and is not read as a normal study. pyConTextNLP HISTORICAL ("previous",
# "prior", "previously described", "on previous exam", "again", "redemonstration", "residual").
PRIOR_STUDY_WORDS: Final[tuple[str, ...]] = (
    "previous", "previously", "prior", "earlier", "again", "interval", "residual", "redemonstrated",
    "redemonstration", "persistent", "persists", "since",
)  # fmt: skip

# Words that place a draft among devices, tubes and lines: a draft whose only words about the six labels
# are denials is then not read as a normal study. CheXpert labeler support-device mention phrases.
DEVICE_WORDS: Final[tuple[str, ...]] = (
    "tube", "tubes", "catheter", "catheters", "lines", "picc", "pacer", "pacemaker", "defibrillator",
    "icd", "aicd", "valve", "hardware", "device", "devices", "drain", "drains", "cannula", "coil",
    "coils", "mediport", "port-a-cath", "stent", "stents", "leads", "wires", "clips", "sternotomy",
)  # fmt: skip
