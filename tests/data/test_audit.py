"""The dataset audit's numeric core: hashes against the imagehash package, flipped labels against
the injected truth and against cleanlab on the same out-of-fold probabilities, injected copies."""

from __future__ import annotations

import io

import imagehash
import numpy as np
from cleanlab.filter import find_label_issues
from helpers import ROOT
from PIL import Image

from resnet_tl.data import audit, decode_bytes, decode_image
from resnet_tl.data.phash import dhash, hashes, phash

SAMPLE = ROOT / "data" / "sample"


def _bits(h: np.uint64) -> np.ndarray:
    return np.array([(int(h) >> k) & 1 for k in range(64)], dtype=bool)


def test_our_hashes_are_the_imagehash_packages_bit_for_bit():
    for path in sorted(SAMPLE.glob("*/*_00[0-4].*")):
        pixels = decode_image(path, 64)
        img = Image.fromarray(pixels)
        assert np.array_equal(_bits(dhash(pixels)), imagehash.dhash(img).hash.ravel()), path
        assert np.array_equal(_bits(phash(pixels)), imagehash.phash(img).hash.ravel()), path


def _separable(n=1000, classes=5, dims=128, seed=0, flip_rate=0.05, noise=2.0):
    """Features of well separated classes (ReLU'd Gaussian clusters) and labels with seeded flips."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)
    feats = np.maximum(rng.normal(0, 1, (classes, dims))[truth] + rng.normal(0, noise, (n, dims)), 0).astype("float32")
    flipped = rng.random(n) < flip_rate
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, classes, flipped.sum())) % classes
    return feats, truth, given, flipped


def _pr(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    p = (flagged & truth).sum() / max(flagged.sum(), 1)
    r = (flagged & truth).sum() / truth.sum()
    return p, r, 2 * p * r / max(p + r, 1e-9)


def test_flipped_labels_are_found_and_we_match_or_beat_cleanlab_on_the_same_probabilities():
    feats, truth, given, flipped = _separable()
    x, var = audit.pca(feats)
    probs = audit.oof_probabilities(x, var, given, 5)
    issues = audit.label_issues(probs, given)
    ours = np.zeros(len(given), bool)
    ours[[i.index for i in issues]] = True
    p, r, f1 = _pr(ours, flipped)
    assert p >= 0.8 and r >= 0.8, (p, r)
    assert np.mean([i.suggested == truth[i.index] for i in issues if flipped[i.index]]) >= 0.9
    assert [i.given_probability for i in issues] == sorted(i.given_probability for i in issues)
    theirs = find_label_issues(given, probs)
    jaccard = (ours & theirs).sum() / (ours | theirs).sum()
    assert jaccard >= 0.8 or f1 >= _pr(theirs, flipped)[2], (jaccard, f1, _pr(theirs, flipped))


def test_out_of_fold_means_a_probe_never_sees_the_image_it_scores():
    # Random labels on random features: a probe that saw its own images would be far above chance.
    rng = np.random.default_rng(3)
    feats, labels = rng.normal(size=(400, 64)).astype("float32"), rng.integers(0, 4, 400)
    x, var = audit.pca(feats)
    acc = (audit.oof_probabilities(x, var, labels, 4).argmax(axis=1) == labels).mean()
    assert acc < 0.4, acc  # chance is 0.25


def _copy(path, size: int, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_resized_reencoded_copies_are_found_and_the_clean_sample_has_no_pair():
    paths = sorted(SAMPLE.glob("*/*"))[::5]  # 120 images of 4 shape classes: many look alike
    originals = np.stack([decode_image(p, 32) for p in paths])
    x, _ = audit.pca(originals.reshape(len(originals), -1))
    assert audit.near_duplicates(x, hashes(originals)) == []
    rng = np.random.default_rng(0)
    picked = rng.choice(len(paths), 30, replace=False)
    copies = np.stack([decode_bytes(_copy(paths[i], int(rng.integers(40, 90)), int(rng.integers(70, 95))), 32) for i in picked])
    pixels = np.concatenate([originals, copies])
    x, _ = audit.pca(pixels.reshape(len(pixels), -1).astype("float32"))
    pairs = audit.near_duplicates(x, hashes(pixels))
    found = {(p["i"], p["j"]) for p in pairs}
    injected = {(int(i), len(originals) + k) for k, i in enumerate(picked)}
    assert len(found & injected) >= 0.95 * len(injected)
    assert found <= injected, found - injected


def test_an_image_unlike_every_class_is_an_outlier():
    feats, _, labels, _ = _separable(n=300, flip_rate=0.0, noise=1.0)
    rng = np.random.default_rng(9)  # image 7 from a sixth cluster, which no label names
    feats[7] = np.maximum(rng.normal(0, 1, feats.shape[1]) + rng.normal(0, 1.0, feats.shape[1]), 0)
    x, _ = audit.pca(feats)
    far, best = audit.outliers(x, labels, 5)
    assert far[0] == 7 and best[7] == best.min() and len(far) <= 3
