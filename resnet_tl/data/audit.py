"""What may be wrong with a labelled dataset, from its backbone features: numpy only.

    found = audit(features, labels, hashes, n_classes)           # all of the below, PCA computed once
    x, var = pca(features)                                        # centred features on their top principal axes
    probs = oof_probabilities(x, var, labels, n_classes)          # k-fold out-of-fold linear probes
    issues = label_issues(probs, labels)                          # the confident-learning rule
    pairs = near_duplicates(x, hashes)                            # feature cosine + perceptual hashes
    far, best = outliers(x, labels, n_classes)                    # low similarity to every class centroid

features: float (N, D) pooled backbone features; labels: int (N,) given classes; hashes: (N, 8)
uint64 from `resnet_tl.data.phash.hashes`.

Label errors follow Northcutt et al., "Confident Learning" (JAIR 2021), section 3: class j's
threshold t_j is the mean out-of-fold probability of j over the images labelled j; an image
whose confident classes (p_j >= t_j) point, by the highest of them, at another class than its
label is a suspected error (cleanlab's ``filter_by="confident_learning"``); see `label_issues`
for images with no confident class. The out-of-fold
probabilities come from multinomial logistic regressions, each fit on the other folds, on the
features reduced by PCA and whitened (well conditioned: plain gradient descent converges fast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resnet_tl.data.phash import close_pairs

PROBE_DIMS = 256  # PCA components the cosine uses (most of the variance) and the probes use at most
COSINE = 0.985  # feature cosine at or above which two images are near-duplicates
HASH_BITS = (12, 12)  # dHash, pHash distances (of 64 bits) at or below which two images are copies ...
COLOUR = 12.0  # ... when their 4 x 4 px colour thumbnails also differ by at most this much (0..255)
FALLBACK = (0.5, 0.3)  # images with no confident class: see `label_issues`
OUTLIER_Z = -3.5  # robust z-score (Iglewicz and Hoaglin's modified z-score cut-off) of the best centroid similarity below which an image is an outlier


@dataclass(frozen=True)
class LabelIssue:
    index: int
    given: int
    suggested: int
    given_probability: float  # out-of-fold probability of the given label
    suggested_probability: float


def pca(features: np.ndarray, dims: int = PROBE_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """(projected (N, k) float32, variances (k,)): centred features on their top-k principal axes.

    Eigen-decomposes the smaller of the covariance (D, D) and the Gram matrix (N, N).
    """
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    x = x - x.mean(axis=0)
    k = min(dims, x.shape[0], x.shape[1])
    scale = max(len(x) - 1, 1)
    if x.shape[1] <= x.shape[0]:
        var, vec = np.linalg.eigh((x.T @ x).astype(np.float64) / scale)
        order = np.argsort(var)[::-1][:k]
        return x @ vec[:, order].astype(np.float32), np.maximum(var[order], 0.0)
    var, u = np.linalg.eigh((x @ x.T).astype(np.float64) / scale)  # x = U S V^T: x V = U S, var = S^2 / scale
    order = np.argsort(var)[::-1][:k]
    var = np.maximum(var[order], 0.0)
    return (u[:, order] * np.sqrt(var * scale)).astype(np.float32), var


def fit_probe(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-2, steps: int = 150) -> np.ndarray:
    """Multinomial logistic regression weights (D + 1, C) by accelerated gradient descent.

    x: whitened features (N, D) (unit variance per column, so the loss' curvature is at most
    1/2 + l2 per direction and step 1 / (1/2 + l2) is safe); a bias column is added here.
    """
    xb = np.hstack([x, np.ones((len(x), 1), np.float32)])
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    w = np.zeros((xb.shape[1], n_classes), np.float32)
    v, step, t = w.copy(), 1.0 / (0.5 + l2), 1.0
    for _ in range(steps):
        p = softmax(xb @ v)
        grad = xb.T @ (p - onehot) / len(xb) + l2 * v
        w_next = v - step * grad
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = w_next + ((t - 1) / t_next) * (w_next - w)
        w, t = w_next, t_next
    return w


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def oof_probabilities(x: np.ndarray, var: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = 5,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities (N, C) float32: each image's from a probe that never saw it.

    x, var: `pca` of the features (unsupervised: no label leaks across folds). Folds are stratified by label and seeded.
    """
    labels = np.asarray(labels, dtype=np.int64)
    # Whitened weak directions are mostly noise the probe would fit: keep ~8 per class (32..256).
    dims = int(np.clip(8 * n_classes, 32, PROBE_DIMS))
    x, var = x[:, :dims], var[:dims]
    x = x / np.sqrt(var + 1e-6 * max(var.max(initial=0.0), 1e-12)).astype(np.float32)
    fold = stratified_folds(labels, folds, seed)
    probs = np.zeros((len(labels), n_classes), np.float32)
    with _one_blas_thread():
        _fit_folds(x, labels, fold, folds, n_classes, probs)
    return probs


def _one_blas_thread():
    """Hundreds of small matmuls run 10x slower on a multi-threaded BLAS whose threads wait for busy
    cores (measured on a shared 2-core CPU): one thread where threadpoolctl is installed (scikit-learn's
    helper; not a dependency of ours), else the BLAS as it is."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _fit_folds(x, labels, fold, folds: int, n_classes: int, probs: np.ndarray) -> None:
    for f in range(folds):
        held = fold == f
        if not held.any():
            continue
        w = fit_probe(x[~held], labels[~held], n_classes)
        probs[held] = softmax(np.hstack([x[held], np.ones((held.sum(), 1), np.float32)]) @ w)


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number (N,) per image: each class dealt round-robin over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        fold[idx] = (np.arange(len(idx)) + rng.integers(folds)) % folds
    return fold


def label_issues(probs: np.ndarray, labels: np.ndarray) -> list[LabelIssue]:
    """Suspected label errors, most suspicious first (lowest out-of-fold probability of the given label).

    Confident learning: class j is confident for an image when p_j >= t_j (t_j: mean p_j over the
    images labelled j); the image's class is its most probable confident class, flagged when it is
    not the label. A probe trained on noisy labels is less sure of exactly the mislabelled images,
    so some have no confident class at all, which the strict rule misses; those are flagged too when
    their most probable class reaches half its threshold (FALLBACK[0]) and the label stays below
    0.3 of its own (FALLBACK[1]): on seeded flips this beats cleanlab's default filter's F1
    (tests/data/test_audit.py, BENCHMARKS.md).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else 1.0 for j in range(n_classes)])
    ratio = probs / np.maximum(thresholds, 1e-12)
    confident = ratio >= 1.0
    some = confident.any(axis=1)
    assigned = np.where(some, np.where(confident, probs, -1.0).argmax(axis=1), probs.argmax(axis=1))
    rows = np.arange(len(labels))
    unsure = ~some & (ratio[rows, assigned] >= FALLBACK[0]) & (ratio[rows, labels] < FALLBACK[1])
    flagged = (some | unsure) & (assigned != labels)
    order = np.flatnonzero(flagged)[np.argsort(probs[rows, labels][flagged], kind="stable")]
    return [LabelIssue(int(i), int(labels[i]), int(assigned[i]), float(probs[i, labels[i]]), float(probs[i, assigned[i]]))
            for i in order]


def near_duplicates(x: np.ndarray, hashes: np.ndarray, cosine: float = COSINE,
                    hash_bits: tuple[int, int] = HASH_BITS, colour: float = COLOUR, block: int = 1024) -> list[dict]:
    """Pairs of near-identical images, i < j: {"i", "j", "cosine", "dhash", "phash", "colour", "by"}.

    by: "hash" (both perceptual hashes and the colour thumbnail close: exact, resized or
    re-encoded copies) or "features" (cosine of the centred PCA features x >= `cosine`, and the
    hashes and thumbnail within twice the bounds: a crop or an edit of the same picture, where
    features alone would pair any two images a poor backbone cannot tell apart).
    """
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    loose = (2 * hash_bits[0], 2 * hash_bits[1])
    pairs = []
    for i, j, dd, dp, col in close_pairs(hashes, loose, 2 * colour):
        cos = float(x[i] @ x[j])
        by = "hash" if dd <= hash_bits[0] and dp <= hash_bits[1] and col <= colour else "features" if cos >= cosine else None
        if by:
            pairs.append({"i": i, "j": j, "cosine": cos, "dhash": dd, "phash": dp, "colour": round(col, 2), "by": by})
    return sorted(pairs, key=lambda p: (-p["cosine"], p["i"], p["j"]))


def outliers(x: np.ndarray, labels: np.ndarray, n_classes: int, z: float = OUTLIER_Z) -> tuple[np.ndarray, np.ndarray]:
    """(indices of outliers, most distant first; best centroid similarity (N,)).

    Similarity: cosine of an image's centred PCA features to each class centroid (mean of that
    class's unit vectors); an outlier's best similarity lies more than |z| robust standard
    deviations (1.4826 x median absolute deviation) below the median. x: `pca` of the features.
    """
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels, dtype=np.int64)
    centroids = np.stack([x[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(x.shape[1], x.dtype)
                          for c in range(n_classes)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    best = (x @ centroids.T).max(axis=1)
    med = np.median(best)
    mad = 1.4826 * np.median(np.abs(best - med))
    score = (best - med) / max(mad, 1e-6)
    idx = np.flatnonzero(score < z)
    return idx[np.argsort(best[idx], kind="stable")], best


@dataclass
class Audit:
    probs: np.ndarray  # (N, C) out-of-fold probabilities
    issues: list[LabelIssue]
    duplicates: list[dict]
    outliers: np.ndarray  # indices, most distant first
    similarity: np.ndarray  # (N,) best class-centroid cosine


def audit(features: np.ndarray, labels: np.ndarray, hashes: np.ndarray, n_classes: int, seed: int = 0) -> Audit:
    """Every finding of this module on one dataset; the PCA runs once."""
    x, var = pca(features)
    probs = oof_probabilities(x, var, labels, n_classes, seed=seed)
    far, best = outliers(x, labels, n_classes)
    return Audit(probs, label_issues(probs, labels), near_duplicates(x, hashes), far, best)
