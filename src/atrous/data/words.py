"""Words from noisy character images (the words task of Chen et al., ICML 2015): a seeded
generator of rendered 5-letter words, and a reader for the OCR letters data the field uses
(Taskar, Guestrin & Koller's ``letter.data``, from Rob Kassel's Stanford OCR set).

A rendered letter is a ``16 x 8`` grey image (the OCR data's size) in ``[0, 1]``: a glyph from a
font found on the machine (DejaVu, Liberation or FreeSans under /usr/share/fonts, else PIL's own
default font), scaled to the box's height (ascender to descender), then jittered (scale, shift,
rotation, shear), occluded by a bar and noised, so that a letter seen alone is often ambiguous
and the word's other letters help. Which fonts are found changes the images; the seed fixes
the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..errors import DataError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
HEIGHT, WIDTH = 16, 8
"""A letter image's size: the OCR data's 16 x 8 pixels."""
_WORDS = """
    about above actor acute adopt adult after again agent agree ahead alarm album alert alike
    alive allow alone along alter among anger angle angry apart apple apply arena argue arise
    array aside asset audio audit avoid award aware badly baker bases basic beach began begin
    being below bench birth black blame blind block blood board boost booth bound brain brand
    bread break breed brief bring broad brown build built buyer cable camel carry catch cause
    chain chair chart chase cheap check chest chief child china chose civil claim class clean
    clear click clock close coach coast could count court cover craft crash cream crime cross
    crowd crown curve cycle daily dance dated dealt death debut delay depth doing doubt dozen
    draft drama drawn dream dress drink drive drove dying eager early earth eight elite empty
    enemy enjoy enter entry equal error event every exact exist extra faith false fault fiber
    field fifth fifty fight final first fixed flash fleet floor fluid focus force forth forty
    forum found frame frank fraud fresh front fruit fully funny giant given glass globe going
    grace grade grand grant grass great green gross group grown guard guess guest guide happy
    heart heavy hence horse hotel house human ideal image index inner input issue joint judge
    known label large laser later laugh layer learn lease least leave legal level light limit
    local logic loose lower lucky lunch major maker march match mayor meant media metal might
    minor minus mixed model money month moral motor mount mouse mouth movie music needs never
    newly night noise north noted novel nurse occur ocean offer often order other ought paint
    panel paper party peace phase phone photo piece pilot pitch place plain plane plant plate
    point pound power press price pride prime print prior prize proof proud prove queen quick
    quiet quite radio raise range rapid ratio reach ready refer right rival river rough round
    route royal rural scale scene scope score sense serve seven shall shape share sharp sheet
    shelf shell shift shirt shock shoot short shown sight since sixth sixty sized skill sleep
    slide small smart smile smith smoke solid solve sorry sound south space spare speak speed
    spend spent split spoke sport staff stage stake stand start state steam steel stick still
    stock stone stood store storm story strip stuck study stuff style sugar suite super sweet
    table taken taste taxes teach teeth thank theft their theme there these thick thing think
    third those three threw throw tight times tired title today topic total touch tough tower
    track trade train treat trend trial tried tries truck truly trust truth twice under undue
    union unity until upper upset urban usage usual valid value video virus visit vital voice
    waste watch water wheel where which while white whole whose woman women world worry worse
    worst worth would wound write wrong wrote yield young youth
"""
LEXICON = tuple(_WORDS.split())
"""Common English 5-letter words (written for atrous; no list was copied)."""
FONT_NAMES = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "LiberationSans-Regular.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
    "FreeSans.ttf",
    "FreeSerif.ttf",
)
"""Debian fonts used where installed (fonts-dejavu-core, fonts-liberation, fonts-freefont)."""


@lru_cache(maxsize=4)
def find_fonts(root: str = "/usr/share/fonts") -> tuple[str, ...]:
    """Paths of the :data:`FONT_NAMES` installed under ``root``, sorted (may be empty)."""
    found = {p.name: str(p) for p in Path(root).rglob("*.ttf")} if Path(root).is_dir() else {}
    return tuple(found[name] for name in FONT_NAMES if name in found)


def _load_font(path: str | None, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path is None:
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, ImportError, OSError):  # no FreeType: the small bitmap font
            return ImageFont.load_default()
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=32)
def _glyphs(path: str | None) -> tuple[np.ndarray, ...]:
    """Each letter's ink as float arrays in ``[0, 1]``, cropped to its own width and to the
    font's common height (ascender to descender), so short letters stay short."""
    font = _load_font(path, 32)
    canvases = []
    for letter in LETTERS:
        canvas = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(canvas).text((8, 4), letter, fill=255, font=font)
        canvases.append(canvas)
    boxes = [c.getbbox() or (0, 0, 1, 1) for c in canvases]
    top, bottom = min(b[1] for b in boxes), max(b[3] for b in boxes)
    return tuple(
        np.asarray(c.crop((b[0], top, b[2], bottom)), dtype=np.float32) / 255
        for c, b in zip(canvases, boxes, strict=True)
    )


@dataclass(frozen=True)
class Noise:
    """How a rendered letter is spoiled (chosen so that unaries alone misread letters)."""

    jitter: float = 0.12  # scale, shift (fraction of the box) and shear amplitude
    rotate: float = 12.0  # degrees, uniform in +-rotate
    occlude: float = 0.5  # probability of a bar across the letter
    pixel: float = 0.25  # Gaussian pixel noise (std)
    flip: float = 0.08  # salt-and-pepper: probability a pixel is set to 0 or 1


def render_letter(glyph: np.ndarray, rng: np.random.Generator, noise: Noise) -> np.ndarray:
    """One ``16 x 8`` noisy image of a glyph: its height fills the box (its width too where
    it is wider than the box allows), jittered, occluded and noised."""
    gh, gw = glyph.shape
    j, angle = noise.jitter, math.radians(rng.uniform(-noise.rotate, noise.rotate))
    fill = (HEIGHT - 1) / gh  # output pixels per glyph pixel
    sy = (1 + rng.uniform(-j, j)) * fill
    sx = (1 + rng.uniform(-j, j)) * min(fill, (WIDTH - 1) / gw)
    shear = rng.uniform(-j, j) * 2
    cos, sin = math.cos(angle), math.sin(angle)
    # forward map: glyph centre -> box centre (+ shift), via scale, shear, rotation
    fwd = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, shear], [0, 1]]) @ np.diag([sx, sy])
    inv = np.linalg.inv(fwd)
    centre_out = np.array([WIDTH / 2 + rng.uniform(-j, j) * WIDTH, HEIGHT / 2])
    centre_out[1] += rng.uniform(-j, j) * HEIGHT
    offset = np.array([gw / 2, gh / 2]) - inv @ centre_out
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    image = Image.fromarray(glyph).transform(
        (WIDTH, HEIGHT), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR
    )
    out = np.asarray(image, dtype=np.float32).copy()
    if rng.random() < noise.occlude:  # a bar of ink or of paper, across or down
        value = float(rng.integers(0, 2))
        if rng.random() < 0.5:
            r = int(rng.integers(0, HEIGHT - 2))
            out[r : r + int(rng.integers(2, 4))] = value
        else:
            c = int(rng.integers(0, WIDTH - 1))
            out[:, c : c + int(rng.integers(1, 3))] = value
    out += rng.normal(0, noise.pixel, out.shape).astype(np.float32)
    flips = rng.random(out.shape) < noise.flip
    out[flips] = rng.integers(0, 2, int(flips.sum())).astype(np.float32)
    return np.clip(out, 0, 1)


@dataclass(frozen=True)
class Words:
    """Word images ``[W, L, 16, 8]`` float in ``[0, 1]`` and letter labels ``[W, L]`` int64
    (``a`` = 0)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def text(self, index: int) -> str:
        return "".join(LETTERS[int(c)] for c in self.labels[index])


def make_noisy_words(
    num_words: int,
    *,
    seed: int = 0,
    lexicon: tuple[str, ...] = LEXICON,
    noise: Noise = Noise(),
    fonts: tuple[str, ...] | None = None,
) -> Words:
    """``num_words`` words drawn uniformly from ``lexicon`` (one length, letters a-z), each
    letter rendered in a font drawn from ``fonts`` (default: :func:`find_fonts`, else PIL's
    default font) and spoiled by ``noise``. The same seed and fonts give the same tensors."""
    if not lexicon or len({len(w) for w in lexicon}) != 1:
        raise ValueError("lexicon must hold words of one length")
    bad = [w for w in lexicon if not set(w) <= set(LETTERS)]
    if bad:
        raise ValueError(f"lexicon words must be lower-case a-z, got {bad[:3]}")
    paths: tuple[str | None, ...] = (fonts if fonts is not None else find_fonts()) or (None,)
    glyphs = [_glyphs(p) for p in paths]
    rng = np.random.default_rng(seed)
    length = len(lexicon[0])
    labels = np.zeros((num_words, length), dtype=np.int64)
    images = np.zeros((num_words, length, HEIGHT, WIDTH), dtype=np.float32)
    for w in range(num_words):
        word = lexicon[int(rng.integers(len(lexicon)))]
        font = glyphs[int(rng.integers(len(glyphs)))]  # one font per word
        for p, letter in enumerate(word):
            labels[w, p] = LETTERS.index(letter)
            images[w, p] = render_letter(font[labels[w, p]], rng, noise)
    return Words(torch.from_numpy(images), torch.from_numpy(labels))


OCR_FIELDS = 6 + HEIGHT * WIDTH
"""``letter.data`` columns: id, letter, next_id, word_id, position, fold, 128 pixels (16 x 8)."""


@dataclass(frozen=True)
class OCRLetters:
    """The OCR letters: ``images`` ``[N, 16, 8]`` float 0/1, ``letters`` ``[N]`` (``a`` = 0),
    and per letter its ``ids``, ``next_ids`` (-1 ends a word), ``word_ids``, ``positions``
    and cross-validation ``folds``, all ``[N]`` int64."""

    images: Tensor
    letters: Tensor
    ids: Tensor
    next_ids: Tensor
    word_ids: Tensor
    positions: Tensor
    folds: Tensor


def read_ocr_letters(path: str | Path) -> OCRLetters:
    """Read ``letter.data`` (tab-separated, one letter a line); a DataError names the file and
    line of anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (the OCR letters data, letter.data)")
    rows, pixels, letters = [], [], []
    with path.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != OCR_FIELDS:
                raise DataError(
                    f"{path}:{number}: expected {OCR_FIELDS} tab-separated fields (id, letter, "
                    f"next_id, word_id, position, fold, {HEIGHT * WIDTH} pixels), got {len(fields)}"
                )
            if fields[1] not in LETTERS or len(fields[1]) != 1:
                raise DataError(f"{path}:{number}: letter must be one of a-z, got {fields[1]!r}")
            try:
                numbers = [int(v) for v in (fields[0], *fields[2:6])]
                values = [int(v) for v in fields[6:]]
            except ValueError as err:
                raise DataError(f"{path}:{number}: a field is not an integer ({err})") from None
            if any(v not in (0, 1) for v in values):
                raise DataError(f"{path}:{number}: pixels must be 0 or 1")
            rows.append(numbers)
            pixels.append(values)
            letters.append(LETTERS.index(fields[1]))
    if not rows:
        raise DataError(f"{path}: holds no letters")
    table = torch.tensor(rows, dtype=torch.long)
    images = torch.tensor(pixels, dtype=torch.float32).view(-1, HEIGHT, WIDTH)
    ids, next_ids, word_ids, positions, folds = table.T
    return OCRLetters(images, torch.tensor(letters), ids, next_ids, word_ids, positions, folds)


def ocr_words(data: OCRLetters, *, length: int | None = 5) -> tuple[Words, Tensor]:
    """The OCR letters grouped into words (by word id, in position order), keeping those of
    ``length`` letters (all lengths when None: then they must agree), and each word's fold."""
    words: dict[int, list[int]] = {}
    for row in torch.argsort(data.word_ids * 10_000 + data.positions).tolist():
        words.setdefault(int(data.word_ids[row]), []).append(row)
    keep = [rows for rows in words.values() if length is None or len(rows) == length]
    if not keep:
        raise DataError(f"no OCR word has {length} letters")
    if len({len(rows) for rows in keep}) != 1:
        raise DataError("OCR words have several lengths; pass length= to keep one")
    index = torch.tensor(keep)
    folds = data.folds[index[:, 0]]
    return Words(data.images[index], data.letters[index]), folds
