"""Captions: phrasings of the digits, split into those a model trains on and those held out
to test whether it follows prompts it never saw, and the caption groups of a data set.

A digit's phrasing is a template with the digit filled in as a number word ("seven") or a
numeral ("7"), with the article that goes with it ("an eight", "an 8"). Templates vary the
wording, the word order and the sentence form ("a handwritten seven", "the number 7 in
handwriting", "someone wrote the digit seven"). The held-out templates share no phrasing
with the training ones, so a model evaluated on them is prompted with sentences it never
saw; only the digit (a word or numeral it did see) carries over.

A `CaptionSet` is what a text-conditioned run trains on: caption groups, where group 0 is
the empty caption alone (the unconditional model of classifier-free guidance) and every
example belongs to one group (digits: its class, shown a random training phrasing per
step; an image folder: its own caption).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DIGIT_WORDS",
    "HELDOUT_TEMPLATES",
    "TRAIN_TEMPLATES",
    "CaptionSet",
    "digit_captions",
    "digit_caption_set",
    "digit_prompts",
]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {n}: the number (word or numeral); {a}: the number with its indefinite article.
TRAIN_TEMPLATES = (
    "{n}",
    "a handwritten {n}",
    "the digit {n}",
    "a picture of the number {n}",
    "number {n}",
    "an image of {a}",
    "{a} written by hand",
    "the number {n} in handwriting",
    "handwritten digit {n}",
    "a small grey image of {a}",
    "{n}, drawn by hand",
    "someone wrote the digit {n}",
    "a scanned {n}",
    "this is {a}",
    "digit: {n}",
    "a blurry handwritten {n}",
)
HELDOUT_TEMPLATES = (
    "a drawing of the digit {n}",
    "a photo of a handwritten {n}",
    "{n} written with a pen",
    "the handwritten number {n}",
    "a sketch of {a}",
    "here is the digit {n}",
    "please draw {a}",
    "the figure {n}, handwritten",
)
Split = Literal["train", "heldout"]


def _article(word: str) -> str:
    return "an" if word == "eight" else "a"  # by sound: an eight, an 8, a one, a 1


def _fill(template: str, digit: int) -> list[str]:
    """The template with `digit` as a number word and as a numeral."""
    word = DIGIT_WORDS[digit]
    return [template.format(n=n, a=f"{_article(word)} {n}") for n in (word, str(digit))]


def digit_captions(digit: int, split: Split = "train") -> tuple[str, ...]:
    """Every phrasing of `digit` (0..9) of the training or the held-out templates."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digits are 0..9, got {digit}")
    templates = TRAIN_TEMPLATES if split == "train" else HELDOUT_TEMPLATES
    return tuple(c for t in templates for c in _fill(t, digit))


def digit_prompts(labels: Iterable[int], split: Split = "heldout") -> list[str]:
    """One prompt per label: the i-th label gets phrasing i (cyclically) of its digit, so a
    long enough list of labels uses every phrasing of the split."""
    prompts = []
    for i, y in enumerate(labels):
        phrasings = digit_captions(int(y), split)
        prompts.append(phrasings[i % len(phrasings)])
    return prompts


@dataclass(frozen=True)
class CaptionSet:
    """Caption groups: `groups[g]` are the captions an example of group g may be shown;
    group 0 is the empty caption alone."""

    groups: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not self.groups or self.groups[0] != ("",):
            raise ValueError('group 0 of a caption set must be the empty caption ("",)')
        if any(not g for g in self.groups):
            raise ValueError("every caption group needs at least one caption")

    @classmethod
    def of(cls, groups: Sequence[Sequence[str]]) -> CaptionSet:
        """The empty-caption group followed by `groups` (group g + 1 is groups[g])."""
        return cls((("",), *(tuple(g) for g in groups)))

    def texts(self) -> list[str]:
        """The distinct captions, in first-seen order."""
        return list(dict.fromkeys(t for g in self.groups for t in g))


def digit_caption_set() -> CaptionSet:
    """Digits: group d + 1 holds the training phrasings of digit d."""
    return CaptionSet.of([digit_captions(d, "train") for d in range(10)])
