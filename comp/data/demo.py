"""A deterministic synthetic stand-in for the KazanExpress 2023 product-categorization data.

The original competition asks for the leaf category of Russian marketplace products from a
JSON bag of seller texts, the shop, a rating, a sale flag and a photo. This module writes a
data set of the same shape and with the same difficulties — long-tailed classes, sibling
leaves that differ by one optional word, uninformative titles, empty descriptions, shops that
give the category away only partly, a little label noise, a few missing and one corrupt image —
so that every model, test and benchmark of the harness runs offline on it.

Everything is drawn from ``numpy.random.default_rng`` streams spawned from ``DemoSpec.seed``:
the same spec writes byte-identical files.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from comp.errors import CompError

CATEGORY_SEPARATOR = "->"
TRAIN_FILE = "train.parquet"
TEST_FILE = "test.parquet"
IMAGES_DIR = "images"
VOCABULARY_DIR = Path(__file__).parent / "vocabulary"

T = TypeVar("T")


@dataclass(frozen=True)
class DemoSpec:
    """Size and seed of a demo competition; the real KazanExpress scale is
    `DemoSpec(train_rows=91120, test_rows=16860, classes=874)`."""

    train_rows: int = 3000
    test_rows: int = 600
    classes: int = 60  # number of leaf categories
    image_size: int | None = 64  # None = no images written
    seed: int = 0
    language: str = "ru"  # the vocabulary: vocabulary/<language>.json

    def __post_init__(self) -> None:
        if self.classes < 2:
            self._refuse(f"classes must be at least 2, got {self.classes}")
        if self.seed < 0:
            self._refuse(f"seed must be 0 or more, got {self.seed}")
        if self.train_rows < self.classes:  # every leaf needs a train row
            self._refuse(f"train_rows ({self.train_rows}) must be at least classes ({self.classes})")
        if self.test_rows < 1:
            self._refuse(f"test_rows must be at least 1, got {self.test_rows}")
        if self.image_size is not None and self.image_size < 16:
            self._refuse(f"image_size must be at least 16 pixels, got {self.image_size}")
        if self.language not in languages():
            self._refuse(f"no vocabulary for language {self.language!r} (known: {', '.join(languages())})")

    @staticmethod
    def _refuse(reason: str) -> None:
        raise CompError(f"cannot make that demo: {reason}")


@dataclass(frozen=True)
class DemoSummary:
    train_rows: int
    test_rows: int
    classes: int
    images_written: int  # files under images/, the corrupt one included
    missing_images: int  # product ids without an image file (train and test)
    corrupt_images: int  # files that exist but do not decode


# ---------------------------------------------------------------------------------------------
# Vocabulary: a hand-written category catalogue per language (vocabulary/<language>.json).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Qualifier:
    """What tells sibling leaves apart: `Футболки мужские` vs `Футболки женские`."""

    label: str  # appended to the leaf name
    phrase: str  # how a seller says it in a title or description
    filter: tuple[str, str]  # marketplace filter name and value


@dataclass(frozen=True)
class _ProductType:
    plural: str  # category name
    singular: str  # title noun
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class _Subcategory:
    name: str
    words: tuple[str, ...]  # vocabulary shared by every product type below it
    axis: str  # key of `Vocabulary.axes`: what splits its product types into sibling leaves
    product_types: tuple[_ProductType, ...]


@dataclass(frozen=True)
class _Department:
    name: str
    shape: str  # key of `_SHAPES`: the image signal of the department
    hue: float  # base colour of its images, 0..1
    brands: tuple[str, ...]
    shop_words: tuple[str, ...]
    characteristics: tuple[tuple[str, tuple[str, ...]], ...]
    sale_rate: float
    subcategories: tuple[_Subcategory, ...]


@dataclass(frozen=True)
class Vocabulary:
    """Every word the generator writes, in one language; leaves are taken from `departments`."""

    root_category: str
    axes: Mapping[str, tuple[_Qualifier, ...]]  # what tells sibling leaves apart
    series_names: tuple[str, ...]  # when the axes cannot give enough leaves, lines split by series
    colours: tuple[str, ...]
    countries: tuple[str, ...]
    generic_brands: tuple[str, ...]
    generic_titles: tuple[str, ...]
    marketing_sentences: tuple[str, ...]
    attribute_tags: tuple[str, ...]
    shop_words: tuple[str, ...]
    shop_suffixes: tuple[str, ...]
    surnames: tuple[str, ...]
    initials: str
    model_letters: str
    model_suffixes: tuple[str, ...]
    phrases: Mapping[str, Any]  # sentence templates and fixed names (see the JSON files)
    departments: tuple[_Department, ...]


def languages() -> list[str]:
    return sorted(p.stem for p in VOCABULARY_DIR.glob("*.json"))


def load_vocabulary(language: str) -> Vocabulary:
    path = VOCABULARY_DIR / f"{language}.json"
    if not path.is_file():
        raise CompError(f"no demo vocabulary for language {language!r} (known: {', '.join(languages())})")
    raw = json.loads(path.read_text(encoding="utf-8"))
    structured = {"axes", "phrases", "departments"}
    words = {key: tuple(value) if isinstance(value, list) else value
             for key, value in raw.items() if key not in structured}
    return Vocabulary(
        **words,
        axes=MappingProxyType({
            name: tuple(_Qualifier(label, phrase, (key, value)) for label, phrase, key, value in qualifiers)
            for name, qualifiers in raw["axes"].items()
        }),
        phrases=MappingProxyType(raw["phrases"]),
        departments=tuple(_department(d) for d in raw["departments"]),
    )


def _department(raw: Mapping[str, Any]) -> _Department:
    return _Department(
        name=raw["name"], shape=raw["shape"], hue=raw["hue"], brands=tuple(raw["brands"]),
        shop_words=tuple(raw["shop_words"]),
        characteristics=tuple((name, tuple(values)) for name, values in raw["characteristics"].items()),
        sale_rate=raw["sale_rate"],
        subcategories=tuple(
            _Subcategory(s["name"], tuple(s["words"]), s["axis"], tuple(
                _ProductType(pt["plural"], pt["singular"], tuple(pt["keywords"])) for pt in s["product_types"]
            ))
            for s in raw["subcategories"]
        ),
    )


# ---------------------------------------------------------------------------------------------
# Category tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    category_id: int
    path: tuple[str, ...]  # below the root: department, subcategory, [product type,] leaf
    department_index: int
    department: _Department
    subcategory: _Subcategory
    product: _ProductType
    qualifier: _Qualifier | None
    usual_values: Mapping[str, tuple[str, ...]]  # the characteristic values this leaf favours
    usual_colours: tuple[str, ...]
    image_hue_shift: float
    image_stripe: bool
    root: str  # the catalogue's root category

    @property
    def name(self) -> str:
        return CATEGORY_SEPARATOR.join((self.root, *self.path))

    @property
    def parent(self) -> tuple[str, ...]:
        return self.path[:-1]


@dataclass(frozen=True)
class _ProductLine:
    department_index: int
    subcategory: _Subcategory
    product: _ProductType


def _product_lines_interleaved(rng: np.random.Generator, vocab: Vocabulary) -> list[_ProductLine]:
    """Every product type, in an order that visits all departments before repeating one.

    Small specs take a prefix of this list, so they still span the whole catalogue.
    """
    per_department = []
    for department_index, department in enumerate(vocab.departments):
        per_subcategory = []
        for subcategory in department.subcategories:
            order = rng.permutation(len(subcategory.product_types))
            lines = [_ProductLine(department_index, subcategory, subcategory.product_types[i]) for i in order]
            per_subcategory.append(lines)
        subcategory_order = rng.permutation(len(per_subcategory))
        per_department.append(_round_robin([per_subcategory[i] for i in subcategory_order]))
    return _round_robin(per_department)


def _round_robin(queues: Sequence[Sequence[T]]) -> list[T]:
    longest = max(len(queue) for queue in queues)
    return [queue[i] for i in range(longest) for queue in queues if i < len(queue)]


# Every fifth product line stays a single leaf, so trees of any size keep depth-3 leaves.
_UNSPLIT_EVERY = 5


def _plan_leaf_qualifiers(lines: Sequence[_ProductLine], extra_leaves: int, vocab: Vocabulary
                          ) -> list[list[_Qualifier]]:
    """Split product lines into sibling leaves until `extra_leaves` more leaves exist.

    A split line with qualifiers q1..qk becomes k leaves instead of one. Hand-written axes
    (gender, device, pet…) come first; generic series are the last resort.
    """
    plan: list[list[_Qualifier]] = [[] for _ in lines]
    splittable = [i for i in range(len(lines)) if i % _UNSPLIT_EVERY != _UNSPLIT_EVERY - 1]
    remaining = extra_leaves
    for index in splittable:
        if remaining == 0:
            break
        axis = vocab.axes[lines[index].subcategory.axis]
        taken = min(len(axis), remaining + 1)
        plan[index] = list(axis[:taken])
        remaining -= taken - 1
    # Here every splittable line carries its whole axis, so each series adds exactly one leaf.
    series = 0
    while remaining > 0:
        for index in splittable[:remaining]:
            plan[index].append(_series(series, vocab))
        remaining -= min(remaining, len(splittable))
        series += 1
    return plan


def _series(index: int, vocab: Vocabulary) -> _Qualifier:
    name = vocab.series_names[index] if index < len(vocab.series_names) else str(index + 1)
    label = vocab.phrases["series"].format(name=name)
    return _Qualifier(label, label, (vocab.phrases["series_filter"], name))


def _build_leaves(classes: int, rng: np.random.Generator, vocab: Vocabulary) -> tuple[_Leaf, ...]:
    all_lines = _product_lines_interleaved(rng, vocab)
    # Two product lines for every three leaves; splitting lines into siblings makes up the rest.
    line_count = min(len(all_lines), max(2, math.ceil(classes * 0.65)))
    lines = all_lines[:line_count]
    plan = _plan_leaf_qualifiers(lines, classes - line_count, vocab)
    category_ids = 2000 + rng.choice(20 * classes + 10000, size=classes, replace=False)

    leaves: list[_Leaf] = []
    for line, qualifiers in zip(lines, plan, strict=True):
        department = vocab.departments[line.department_index]
        base_path = (department.name, line.subcategory.name, line.product.plural)
        for qualifier in qualifiers or [None]:
            path = (
                base_path if qualifier is None else (*base_path, f"{line.product.plural} {qualifier.label}")
            )
            leaves.append(
                _Leaf(
                    category_id=int(category_ids[len(leaves)]),
                    path=path,
                    department_index=line.department_index,
                    department=department,
                    subcategory=line.subcategory,
                    product=line.product,
                    qualifier=qualifier,
                    usual_values=_usual_values(department, rng),
                    usual_colours=_pick_some(vocab.colours, 3, rng),
                    image_hue_shift=float(rng.uniform(-0.05, 0.05)),
                    image_stripe=bool(rng.random() < 0.5),
                    root=vocab.root_category,
                )
            )
    assert len({leaf.path[-1] for leaf in leaves}) == len(leaves), "leaf names must be unique"
    return tuple(leaves)


def _usual_values(department: _Department, rng: np.random.Generator) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({name: _pick_some(values, 2, rng) for name, values in department.characteristics})


def _pick_some(options: Sequence[T], count: int, rng: np.random.Generator) -> tuple[T, ...]:
    return tuple(options[i] for i in rng.choice(len(options), size=count, replace=False))


# ---------------------------------------------------------------------------------------------
# Rows: labels, shops, rating, sale
# ---------------------------------------------------------------------------------------------

# Class sizes are log-normal at evenly spaced quantiles, with a longer tail below the median
# than above it: with 60 classes and 3000 rows the largest class holds ~13% of the rows and
# about five hold 1-3; with 874 classes and 91k rows the largest holds ~2,000 rows and ~35
# hold 1-3 (the original: 1 to 6,590 rows per class).
_CLASS_SIZE_SIGMA_BELOW_MEDIAN = 1.8
_CLASS_SIZE_SIGMA_ABOVE_MEDIAN = 1.1
_LABEL_NOISE_RATE = 0.02


def _class_probabilities(classes: int, rng: np.random.Generator) -> np.ndarray:
    normal = NormalDist()
    quantiles = [normal.inv_cdf((rank + 0.5) / classes) for rank in range(classes)]
    z = np.asarray(quantiles)
    sigma = np.where(z < 0, _CLASS_SIZE_SIGMA_BELOW_MEDIAN, _CLASS_SIZE_SIGMA_ABOVE_MEDIAN)
    weights = np.exp(sigma * z)
    return rng.permutation(weights / weights.sum())


def _draw_train_labels(rows: int, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    counts = 1 + rng.multinomial(rows - len(probabilities), probabilities)
    return rng.permutation(np.repeat(np.arange(len(probabilities)), counts))


def _add_label_noise(labels: np.ndarray, leaves: Sequence[_Leaf], rng: np.random.Generator) -> np.ndarray:
    """Relabel ~2% of rows as a sibling leaf, as careless sellers do.

    The first row of each class keeps its label so that no class loses its last example.
    """
    siblings: dict[tuple[str, ...], list[int]] = {}
    for index, leaf in enumerate(leaves):
        siblings.setdefault(leaf.parent, []).append(index)
    _, first_rows = np.unique(labels, return_index=True)
    has_sibling = np.array([len(siblings[leaf.parent]) > 1 for leaf in leaves])
    eligible = np.flatnonzero(has_sibling[labels])
    eligible = np.setdiff1d(eligible, first_rows)
    noisy_count = min(len(eligible), round(_LABEL_NOISE_RATE * len(labels)))
    noisy_rows = rng.choice(eligible, size=noisy_count, replace=False)
    noisy = labels.copy()
    for row in noisy_rows:
        options = [i for i in siblings[leaves[labels[row]].parent] if i != labels[row]]
        noisy[row] = options[rng.integers(len(options))]
    return noisy


@dataclass(frozen=True)
class _Shops:
    ids: np.ndarray
    titles: tuple[str, ...]
    candidates_per_leaf: tuple[np.ndarray, ...]  # shop indices that sell each leaf
    weights_per_leaf: tuple[np.ndarray, ...]  # their share of that leaf's products


def _build_shops(
    leaves: Sequence[_Leaf], class_probabilities: np.ndarray, rows: int, rng: np.random.Generator,
    vocab: Vocabulary,
) -> _Shops:
    """Shops with Pareto-sized assortments, mostly within one department.

    Big shops sell in many leaves, small ones in one or two: the shop narrows the category
    down without naming it.
    """
    shop_count = max(3, round(rows**0.9 / 12))
    sizes = rng.pareto(1.1, size=shop_count) + 1.0
    department_of_leaf = np.array([leaf.department_index for leaf in leaves])
    department_mass = np.bincount(
        department_of_leaf, weights=class_probabilities, minlength=len(vocab.departments)
    )
    home_departments = rng.choice(
        len(vocab.departments), size=shop_count, p=department_mass / department_mass.sum()
    )
    leaf_count_of_shop = np.minimum(len(leaves), 1 + rng.poisson(1.5 * np.log(sizes) + 0.5, size=shop_count))
    sellers: list[list[int]] = [[] for _ in leaves]
    for shop in range(shop_count):
        in_home = department_of_leaf == home_departments[shop]
        # Mostly the home department, sometimes anything (generalist marketplaces).
        affinity = class_probabilities * np.where(in_home, 1.0, 0.04)
        chosen = rng.choice(
            len(leaves), size=leaf_count_of_shop[shop], replace=False, p=affinity / affinity.sum()
        )
        for leaf_index in chosen:
            sellers[leaf_index].append(shop)
    for leaf_index, shops in enumerate(sellers):
        if not shops:
            home = np.flatnonzero(home_departments == department_of_leaf[leaf_index])
            pool = home if len(home) else np.arange(shop_count)
            shops.append(int(pool[rng.integers(len(pool))]))
    candidates = tuple(np.asarray(shops) for shops in sellers)
    weights = tuple(sizes[c] / sizes[c].sum() for c in candidates)
    titles = _shop_titles(home_departments, rng, vocab)
    ids = 1000 + rng.choice(50 * shop_count + 10000, size=shop_count, replace=False)
    return _Shops(ids.astype(np.int64), titles, candidates, weights)


def _shop_titles(home_departments: np.ndarray, rng: np.random.Generator, vocab: Vocabulary
                 ) -> tuple[str, ...]:
    draws = _Draws(rng)
    titles: list[str] = []
    used: set[str] = set()
    for department_index in home_departments:
        department = vocab.departments[department_index]
        title = _shop_title(department, draws, vocab)
        # Brand stores and catchy names run out; individual entrepreneurs hardly do.
        for _ in range(10):
            if title not in used:
                break
            title = _individual_entrepreneur(draws, vocab)
        if title in used:
            title = f"{title} ({len(used)})"
        used.add(title)
        titles.append(title)
    return tuple(titles)


def _shop_title(department: _Department, draws: _Draws, vocab: Vocabulary) -> str:
    kind = draws.uniform()
    if kind < 0.3:
        word = draws.pick(vocab.shop_words) + draws.pick(vocab.shop_suffixes)
        return vocab.phrases["company"].format(word=word)
    if kind < 0.6:
        return _individual_entrepreneur(draws, vocab)
    if kind < 0.75:
        return f"{draws.pick(department.brands)} Official Store"
    if kind < 0.9:
        return f"{draws.pick(department.shop_words)} {draws.pick(vocab.shop_words)}"
    return f"{draws.pick(vocab.shop_words)}Shop"


def _individual_entrepreneur(draws: _Draws, vocab: Vocabulary) -> str:
    surname = draws.pick(vocab.surnames)
    first = draws.pick(vocab.initials)
    second = draws.pick(vocab.initials)
    return vocab.phrases["entrepreneur"].format(surname=surname, first=first, second=second)


def _assign_shops(labels: np.ndarray, shops: _Shops, rng: np.random.Generator) -> np.ndarray:
    shop_of_row = np.empty(len(labels), dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    boundaries = np.searchsorted(labels[order], np.arange(len(shops.candidates_per_leaf) + 1))
    for leaf_index, candidates in enumerate(shops.candidates_per_leaf):
        rows = order[boundaries[leaf_index] : boundaries[leaf_index + 1]]
        shop_of_row[rows] = rng.choice(candidates, size=len(rows), p=shops.weights_per_leaf[leaf_index])
    return shop_of_row


def _draw_ratings(labels: np.ndarray, leaves: Sequence[_Leaf], rng: np.random.Generator) -> np.ndarray:
    """Mean of a few 1-5 star votes; 0.0 for products nobody rated, as in the original."""
    leaf_rated_share = rng.uniform(0.35, 0.65, size=len(leaves))
    leaf_complaint_rate = rng.uniform(0.05, 0.2, size=len(leaves))
    votes = np.where(rng.random(len(labels)) < leaf_rated_share[labels], rng.geometric(0.3, len(labels)), 0)
    # Each vote is 5 minus Binomial(4, complaint rate) stars.
    lost_stars = rng.binomial(4 * votes, leaf_complaint_rate[labels])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratings = np.where(votes > 0, (5 * votes - lost_stars) / votes, 0.0)
    return ratings.astype(np.float64)


def _draw_sale_flags(labels: np.ndarray, leaves: Sequence[_Leaf], rng: np.random.Generator) -> np.ndarray:
    base = np.array([leaf.department.sale_rate for leaf in leaves])
    leaf_rate = np.clip(base + rng.normal(0.0, 0.08, size=len(leaves)), 0.02, 0.9)
    return rng.random(len(labels)) < leaf_rate[labels]


# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------


class _Draws:
    """Scalar random choices served from blocks of a numpy Generator.

    Writing 100k product texts takes millions of small choices: a scalar Generator call costs
    about a microsecond, popping a pre-drawn float a few dozen nanoseconds.
    """

    _BLOCK = 1 << 16

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []

    def uniform(self) -> float:
        if not self._block:
            self._block = self._rng.random(self._BLOCK).tolist()
        return self._block.pop()

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def below(self, count: int) -> int:
        return int(self.uniform() * count)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def pick_some(self, options: Sequence[T], count: int) -> list[T]:
        """Up to `count` distinct options in random order."""
        pool = list(options)
        picked = []
        for _ in range(min(count, len(pool))):
            picked.append(pool.pop(self.below(len(pool))))
        return picked


# Title kinds and their shares; the uninformative ones keep text models honest.
_TITLE_KINDS: tuple[tuple[str, float], ...] = (
    ("full", 0.45),
    ("keywords", 0.12),
    ("subcategory", 0.12),
    ("generic", 0.17),
    ("model_code", 0.14),
)
# How often the word that tells siblings apart shows up in each field.
_QUALIFIER_IN_TITLE = 0.35
_QUALIFIER_IN_DESCRIPTION = 0.25
_QUALIFIER_IN_FILTERS = 0.35
_EMPTY_DESCRIPTION = 0.4
_LAZY_SELLER = 0.1  # listings with nothing but an uninformative title
_NOUN_IN_DESCRIPTION = 0.6
# Sellers describe a jacket with the words of a down coat: product types of one subcategory
# lend each other keywords.
_BORROWED_KEYWORD = 0.35
_USUAL_VALUE = 0.5  # how often a characteristic takes one of the leaf's usual values
_FOREIGN_WORDS_IN_DESCRIPTION = 0.35
_FOREIGN_WORDS_IN_TITLE = 0.1


@dataclass(frozen=True)
class _RowFacts:
    """The facts about one product that every text field draws from, so they agree."""

    vocab: Vocabulary
    leaf: _Leaf
    foreign: _Leaf  # another leaf whose words leak in as noise
    keywords: tuple[str, ...]
    brand: str
    colour: str
    values: Mapping[str, str]  # characteristic name -> value


def _compose_text_fields(leaf: _Leaf, foreign: _Leaf, draws: _Draws, vocab: Vocabulary) -> str:
    department = leaf.department
    brand = draws.pick(department.brands if draws.chance(0.65) else vocab.generic_brands)
    colour = draws.pick(leaf.usual_colours if draws.chance(0.5) else vocab.colours)
    values = {
        name: draws.pick(leaf.usual_values[name] if draws.chance(_USUAL_VALUE) else options)
        for name, options in department.characteristics
    }
    keywords = tuple(dict.fromkeys(_pick_keyword(leaf, draws) for _ in range(3)))
    facts = _RowFacts(vocab, leaf, foreign, keywords, brand, colour, values)
    if draws.chance(_LAZY_SELLER):
        return _lazy_text_fields(facts, draws)
    fields = {
        "title": _compose_title(facts, draws),
        "description": _compose_description(facts, draws),
        "attributes": _compose_attributes(facts, draws),
        "custom_characteristics": _compose_custom_characteristics(facts, draws),
        "defined_characteristics": _compose_defined_characteristics(facts, draws),
        "filters": _compose_filters(facts, draws),
    }
    return json.dumps(fields, ensure_ascii=False)


def _lazy_text_fields(facts: _RowFacts, draws: _Draws) -> str:
    """A listing with nothing filled in but a title that names no product."""
    title = draws.pick(facts.vocab.generic_titles) if draws.chance(0.5) else _model_code_title(facts, draws)
    fields = {
        "title": title,
        "description": "",
        "attributes": [],
        "custom_characteristics": {},
        "defined_characteristics": {},
        "filters": {},
    }
    return json.dumps(fields, ensure_ascii=False)


def _pick_keyword(leaf: _Leaf, draws: _Draws) -> str:
    product = leaf.product
    if draws.chance(_BORROWED_KEYWORD):
        product = draws.pick(leaf.subcategory.product_types)
    return draws.pick(product.keywords)


def _pick_title_kind(draws: _Draws) -> str:
    point = draws.uniform()
    for kind, share in _TITLE_KINDS:
        point -= share
        if point < 0:
            return kind
    return _TITLE_KINDS[-1][0]


def _compose_title(facts: _RowFacts, draws: _Draws) -> str:
    leaf = facts.leaf
    kind = _pick_title_kind(draws)
    if kind == "generic":
        return draws.pick(facts.vocab.generic_titles)
    if kind == "model_code":
        return _model_code_title(facts, draws)
    if kind == "subcategory":
        return _capitalize(f"{draws.pick(leaf.subcategory.words)} {facts.brand}")

    parts = [] if kind == "keywords" else [leaf.product.singular]
    if leaf.qualifier is not None and draws.chance(_QUALIFIER_IN_TITLE):
        parts.append(leaf.qualifier.phrase)
    parts.extend(facts.keywords[: 2 if draws.chance(0.3) else 1])
    if draws.chance(0.3):
        parts.append(facts.colour)
    if draws.chance(_FOREIGN_WORDS_IN_TITLE):
        parts.append(f"+ {facts.foreign.product.singular.lower()}")
    if draws.chance(0.5):
        parts.insert(0 if draws.chance(0.4) else len(parts), facts.brand)
    return _capitalize(" ".join(parts))


def _model_code_title(facts: _RowFacts, draws: _Draws) -> str:
    """`Xiaomi KT-4521 Pro`: names the brand, not the product."""
    letters = f"{draws.pick(facts.vocab.model_letters)}{draws.pick(facts.vocab.model_letters)}"
    return f"{facts.brand} {letters}-{100 + draws.below(9900)}{draws.pick(facts.vocab.model_suffixes)}"


def _compose_description(facts: _RowFacts, draws: _Draws) -> str:
    if draws.chance(_EMPTY_DESCRIPTION):
        return ""
    leaf, phrases = facts.leaf, facts.vocab.phrases
    keyword = facts.keywords[-1]
    noun = leaf.product.singular if draws.chance(_NOUN_IN_DESCRIPTION) else phrases["any_product"]
    word = draws.pick(leaf.subcategory.words)  # drawn before the opener, whichever is picked
    opener = draws.pick(phrases["openers"])
    sentences = [opener.format(noun=noun, noun_lower=noun.lower(), keyword=keyword, brand=facts.brand,
                               word=word, colour=facts.colour)]
    if leaf.qualifier is not None and draws.chance(_QUALIFIER_IN_DESCRIPTION):
        sentences.append(phrases["model"].format(phrase=leaf.qualifier.phrase))
    sentences.extend(draws.pick_some(facts.vocab.marketing_sentences, draws.below(3)))
    if draws.chance(_FOREIGN_WORDS_IN_DESCRIPTION):
        foreign = facts.foreign.product
        sentences.append(phrases["also"].format(product=foreign.singular.lower(),
                                                keyword=draws.pick(foreign.keywords)))
    html = f"<p>{' '.join(sentences)}</p>"
    if draws.chance(0.6):
        items = "".join(
            f"<li>{name}: {value}</li>"
            for name, value in draws.pick_some(list(facts.values.items()), 1 + draws.below(3))
        )
        html += f"<ul>{items}</ul>"
    if draws.chance(0.5):
        html += "<br>"
    return html


def _compose_attributes(facts: _RowFacts, draws: _Draws) -> list[str]:
    if draws.chance(0.45):
        return []
    pool = [
        *facts.keywords,
        *(f"{name}: {value}" for name, value in facts.values.items()),
        *facts.vocab.attribute_tags,
    ]
    return draws.pick_some(pool, 1 + draws.below(3))


def _compose_custom_characteristics(facts: _RowFacts, draws: _Draws) -> dict[str, list[str]]:
    if draws.chance(0.6):
        return {}
    colours = dict.fromkeys([facts.colour, *draws.pick_some(facts.vocab.colours, draws.below(3))])
    characteristics = {facts.vocab.phrases["colour"]: list(colours)}
    name, options = draws.pick(facts.leaf.department.characteristics)
    characteristics[name] = draws.pick_some(options, 1 + draws.below(3))
    return characteristics


def _compose_defined_characteristics(facts: _RowFacts, draws: _Draws) -> dict[str, list[str]]:
    if draws.chance(0.5):
        return {}
    names = draws.pick_some(list(facts.values), 1 + draws.below(2))
    characteristics = {name: [facts.values[name]] for name in names}
    if draws.chance(0.4):
        characteristics[facts.vocab.phrases["country"]] = [draws.pick(facts.vocab.countries)]
    return characteristics


def _compose_filters(facts: _RowFacts, draws: _Draws) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    qualifier = facts.leaf.qualifier
    if qualifier is not None and draws.chance(_QUALIFIER_IN_FILTERS):
        name, value = qualifier.filter
        filters[name] = [value]
    if draws.chance(0.4):
        filters[facts.vocab.phrases["colour"]] = [facts.colour]
    if draws.chance(0.3):
        name = draws.pick(list(facts.values))
        filters[name] = [facts.values[name]]
    return filters


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

_MISSING_IMAGE_RATE = 0.01
_OFF_PALETTE_RATE = 0.2  # images whose colour says nothing about the department
_BANNER_RATE = 0.08  # images that show another department's shape: a shop banner, a bad photo


@dataclass(frozen=True)
class _Pen:
    """Maps shape coordinates in [-1, 1]² to pixels, with the jitter of one photo."""

    draw: ImageDraw.ImageDraw
    centre_x: float
    centre_y: float
    radius: float
    angle: float
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]

    def point(self, x: float, y: float) -> tuple[float, float]:
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return (
            self.centre_x + self.radius * (x * cos - y * sin),
            self.centre_y + self.radius * (x * sin + y * cos),
        )

    def polygon(self, points: Sequence[tuple[float, float]], accent: bool = False) -> None:
        fill = self.accent if accent else self.colour
        self.draw.polygon([self.point(x, y) for x, y in points], fill=fill)

    def ellipse(self, x: float, y: float, rx: float, ry: float, accent: bool = False) -> None:
        cx, cy = self.point(x, y)
        half_width, half_height = rx * self.radius, ry * self.radius
        box = (cx - half_width, cy - half_height, cx + half_width, cy + half_height)
        self.draw.ellipse(box, fill=self.accent if accent else self.colour)

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, accent: bool = False) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], accent)


def _draw_shirt(pen: _Pen) -> None:
    pen.polygon([(-0.5, -0.8), (-0.2, -0.9), (0.2, -0.9), (0.5, -0.8), (0.95, -0.35),
                 (0.7, -0.1), (0.45, -0.3), (0.45, 0.9), (-0.45, 0.9), (-0.45, -0.3),
                 (-0.7, -0.1), (-0.95, -0.35)])  # fmt: skip


def _draw_phone(pen: _Pen) -> None:
    pen.rectangle(-0.5, -0.95, 0.5, 0.95)
    pen.rectangle(-0.4, -0.8, 0.4, 0.7, accent=True)


def _draw_house(pen: _Pen) -> None:
    pen.polygon([(-0.8, 0.9), (-0.8, -0.1), (0.0, -0.9), (0.8, -0.1), (0.8, 0.9)])
    pen.rectangle(-0.2, 0.3, 0.2, 0.9, accent=True)


def _draw_bottle(pen: _Pen) -> None:
    pen.rectangle(-0.4, -0.3, 0.4, 0.95)
    pen.rectangle(-0.15, -0.7, 0.15, -0.3)
    pen.rectangle(-0.22, -0.95, 0.22, -0.7, accent=True)


def _draw_star(pen: _Pen) -> None:
    points = []
    for i in range(10):
        radius = 0.95 if i % 2 == 0 else 0.4
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((radius * math.cos(angle), radius * math.sin(angle)))
    pen.polygon(points)


def _draw_ball(pen: _Pen) -> None:
    pen.ellipse(0.0, 0.0, 0.9, 0.9)
    pen.rectangle(-0.9, -0.06, 0.9, 0.06, accent=True)
    pen.rectangle(-0.06, -0.9, 0.06, 0.9, accent=True)


def _draw_car(pen: _Pen) -> None:
    pen.rectangle(-0.95, -0.1, 0.95, 0.45)
    pen.polygon([(-0.5, -0.1), (-0.3, -0.55), (0.35, -0.55), (0.6, -0.1)])
    pen.ellipse(-0.55, 0.5, 0.22, 0.22, accent=True)
    pen.ellipse(0.55, 0.5, 0.22, 0.22, accent=True)


def _draw_paw(pen: _Pen) -> None:
    pen.ellipse(0.0, 0.35, 0.5, 0.45)
    for x, y in ((-0.6, -0.2), (-0.25, -0.6), (0.25, -0.6), (0.6, -0.2)):
        pen.ellipse(x, y, 0.2, 0.25)


def _draw_pencil(pen: _Pen) -> None:
    pen.polygon([(-0.95, -0.15), (0.5, -0.15), (0.5, 0.15), (-0.95, 0.15)])
    pen.polygon([(0.5, -0.15), (0.95, 0.0), (0.5, 0.15)], accent=True)


def _draw_box(pen: _Pen) -> None:
    pen.rectangle(-0.7, -0.85, 0.7, 0.85)
    pen.rectangle(-0.7, -0.2, 0.7, 0.25, accent=True)


def _draw_appliance(pen: _Pen) -> None:
    pen.rectangle(-0.8, -0.9, 0.8, 0.9)
    pen.ellipse(0.0, 0.15, 0.5, 0.5, accent=True)
    pen.rectangle(-0.6, -0.75, -0.3, -0.6, accent=True)


def _draw_chair(pen: _Pen) -> None:
    pen.rectangle(-0.5, -0.95, 0.5, -0.05)
    pen.rectangle(-0.7, -0.05, 0.7, 0.2, accent=True)
    pen.rectangle(-0.65, 0.2, -0.5, 0.95)
    pen.rectangle(0.5, 0.2, 0.65, 0.95)


_SHAPES: Mapping[str, Callable[[_Pen], None]] = MappingProxyType(
    {
        "shirt": _draw_shirt,
        "phone": _draw_phone,
        "house": _draw_house,
        "bottle": _draw_bottle,
        "star": _draw_star,
        "ball": _draw_ball,
        "car": _draw_car,
        "paw": _draw_paw,
        "pencil": _draw_pencil,
        "box": _draw_box,
        "appliance": _draw_appliance,
        "chair": _draw_chair,
    }
)


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _render_image(leaf: _Leaf, size: int, rng: np.random.Generator, shapes: Sequence[str]) -> bytes:
    """A product photo: the department decides shape and palette, the leaf barely shows."""
    jitter = rng.random(12)
    background = _hsv(jitter[0], 0.1 + 0.2 * jitter[1], 0.75 + 0.25 * jitter[2])
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    if jitter[3] < 0.3:  # a cluttered background: a table edge, a wall corner
        draw.rectangle(
            (0, int(size * (0.5 + 0.4 * jitter[4])), size, size),
            fill=_hsv(jitter[5], 0.2, 0.5 + 0.3 * jitter[6]),
        )
    hue = leaf.department.hue + leaf.image_hue_shift + rng.normal(0.0, 0.03)
    if jitter[7] < _OFF_PALETTE_RATE:
        hue = jitter[8]
    colour = _hsv(hue, 0.55 + 0.4 * jitter[9], 0.45 + 0.45 * jitter[10])
    accent = _hsv(hue + 0.5, 0.3, 0.25 + 0.6 * jitter[11])
    offsets = rng.uniform(-0.12, 0.12, size=2) * size
    pen = _Pen(
        draw=draw,
        centre_x=size / 2 + offsets[0],
        centre_y=size / 2 + offsets[1],
        radius=size * rng.uniform(0.25, 0.42),
        angle=rng.normal(0.0, 0.25),
        colour=colour,
        accent=accent,
    )
    shape = leaf.department.shape
    if rng.random() < _BANNER_RATE:
        shape = shapes[rng.integers(len(shapes))]
    _SHAPES[shape](pen)
    if leaf.image_stripe and rng.random() < 0.7:
        pen.rectangle(-0.6, 0.05, 0.6, 0.2, accent=True)
    pixels = np.asarray(image, dtype=np.int16)
    pixels = pixels + rng.normal(0.0, 6.0, size=pixels.shape).astype(np.int16)
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class _ImageCounts:
    written: int
    missing: int
    corrupt: int

    def __add__(self, other: _ImageCounts) -> _ImageCounts:
        return _ImageCounts(
            self.written + other.written, self.missing + other.missing, self.corrupt + other.corrupt
        )


def _write_images(
    folder: Path,
    product_ids: np.ndarray,
    labels: np.ndarray,
    leaves: Sequence[_Leaf],
    size: int,
    rng: np.random.Generator,
    corrupt_one: bool,
    shapes: Sequence[str],
) -> _ImageCounts:
    """One JPEG per product except ~1% missing; with `corrupt_one`, one file is cut short."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = len(product_ids)
    missing_count = max(1, round(_MISSING_IMAGE_RATE * rows))
    special = rng.choice(rows, size=missing_count + corrupt_one, replace=False)
    missing = set(special[:missing_count].tolist())
    corrupt = set(special[missing_count:].tolist())
    for row in range(rows):
        if row in missing:
            continue
        jpeg = _render_image(leaves[labels[row]], size, rng, shapes)
        if row in corrupt:
            # A download that died after the JPEG magic: looks like a JPEG, decodes to nothing.
            jpeg = jpeg[:20] + rng.bytes(32)
        (folder / f"{product_ids[row]}.jpg").write_bytes(jpeg)
    return _ImageCounts(written=rows - missing_count, missing=missing_count, corrupt=len(corrupt))


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------


def generate_demo(data_dir: Path, spec: DemoSpec) -> DemoSummary:
    """Write train.parquet, test.parquet and images/{train,test}/<product_id>.jpg to data_dir.

    An images/ folder left by an earlier generation is replaced, so that the files on disk
    always match the tables.
    """
    tree_rng, label_rng, shop_rng, text_rng, image_rng = (
        np.random.default_rng(seed) for seed in np.random.SeedSequence(spec.seed).spawn(5)
    )
    vocab = load_vocabulary(spec.language)
    leaves = _build_leaves(spec.classes, tree_rng, vocab)
    probabilities = _class_probabilities(spec.classes, label_rng)
    train_labels = _draw_train_labels(spec.train_rows, probabilities, label_rng)
    test_labels = label_rng.choice(spec.classes, size=spec.test_rows, p=probabilities)
    all_labels = np.concatenate([train_labels, test_labels])
    product_ids = 100_000 + label_rng.choice(9_900_000, size=len(all_labels), replace=False)
    foreign_labels = label_rng.integers(spec.classes, size=len(all_labels))

    shops = _build_shops(leaves, probabilities, len(all_labels), shop_rng, vocab)
    shop_of_row = _assign_shops(all_labels, shops, shop_rng)
    draws = _Draws(text_rng)
    texts = [
        _compose_text_fields(leaves[label], leaves[foreign], draws, vocab)
        for label, foreign in zip(all_labels.tolist(), foreign_labels.tolist(), strict=True)
    ]
    columns = {
        "product_id": pa.array(product_ids, pa.int64()),
        "text_fields": pa.array(texts, pa.string()),
        "shop_id": pa.array(shops.ids[shop_of_row], pa.int64()),
        "shop_title": pa.array([shops.titles[i] for i in shop_of_row.tolist()], pa.string()),
        "rating": pa.array(_draw_ratings(all_labels, leaves, shop_rng), pa.float64()),
        "sale": pa.array(_draw_sale_flags(all_labels, leaves, shop_rng), pa.bool_()),
    }
    # The texts above describe the true leaf; only the published target is noisy.
    train_targets = [leaves[i] for i in _add_label_noise(train_labels, leaves, label_rng)]
    train = slice(0, spec.train_rows)
    test = slice(spec.train_rows, len(all_labels))
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_table(
        data_dir / TRAIN_FILE,
        {
            "product_id": columns["product_id"][train],
            "category_id": pa.array([leaf.category_id for leaf in train_targets], pa.int64()),
            **{name: column[train] for name, column in columns.items() if name != "product_id"},
            "category_name": pa.array([leaf.name for leaf in train_targets], pa.string()),
        },
    )
    _write_table(data_dir / TEST_FILE, {name: column[test] for name, column in columns.items()})

    shutil.rmtree(data_dir / IMAGES_DIR, ignore_errors=True)
    images = _ImageCounts(written=0, missing=0, corrupt=0)
    shapes = [department.shape for department in vocab.departments]
    if spec.image_size is not None:
        images = _write_images(
            data_dir / IMAGES_DIR / "train", product_ids[train], train_labels, leaves,
            spec.image_size, image_rng, corrupt_one=True, shapes=shapes,
        ) + _write_images(
            data_dir / IMAGES_DIR / "test", product_ids[test], test_labels, leaves,
            spec.image_size, image_rng, corrupt_one=False, shapes=shapes,
        )  # fmt: skip
    return DemoSummary(
        train_rows=spec.train_rows,
        test_rows=spec.test_rows,
        classes=spec.classes,
        images_written=images.written,
        missing_images=images.missing,
        corrupt_images=images.corrupt,
    )


def _write_table(path: Path, columns: Mapping[str, pa.Array]) -> None:
    pq.write_table(pa.table(dict(columns)), path, compression="zstd")
