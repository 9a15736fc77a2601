"""Meta-explanations over many patches (seed 002): mean maps per class and confidence bin,
clusters of explanations with their class purity, and confident disagreements with labels.

Confidence bins are equal-width on ``[low, 1]``; bin ``b`` holds ``edge[b] < conf <= edge[b+1]``
(upper edge inclusive), and bin 0 also takes ``conf == low`` (and anything below ``low``).
"""

from __future__ import annotations

import numpy as np

from ._common import as_stack

__all__ = ["chance_purity", "cluster_purity", "confidence_bins", "confident_disagreements",
           "embed_and_cluster", "explanation_clusters", "mean_maps_by_confidence"]


def confidence_bins(confidence, *, n_bins: int = 6, low: float = 0.0) -> np.ndarray:
    """Bin index of each confidence in ``n_bins`` equal-width bins on ``[low, 1]``.

    Bin ``b`` covers ``(edge[b], edge[b + 1]]``: an upper edge belongs to its bin, a lower edge
    to the bin below; ``conf <= low`` goes to bin 0 and ``conf > 1`` (rounding) to the last.

    Examples
    --------
    >>> confidence_bins([0.0, 0.5, 0.51, 1.0], n_bins=2).tolist()
    [0, 0, 1, 1]
    >>> confidence_bins([0.5, 0.75, 0.76], n_bins=2, low=0.5).tolist()
    [0, 0, 1]
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not 0.0 <= low < 1.0:
        raise ValueError(f"low must be in [0, 1), got {low}")
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    edges = np.linspace(low, 1.0, int(n_bins) + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)


def mean_maps_by_confidence(heatmaps, probs, *, n_bins: int = 6, class_names=None,
                            low: float = 0.0) -> list[dict]:
    """Mean heatmap per predicted class and confidence bin (see :func:`confidence_bins`).

    Parameters
    ----------
    heatmaps : (N, H, W) array
        One explanation per patch (for its predicted class).
    probs : (N, C) array
        Class probabilities; the prediction is the argmax, the confidence its probability.
    n_bins : int
        Confidence bins (6 in seed 002).
    low : float
        Lower end of the binned range (``1 / n_classes`` spreads the bins over the confidences
        a softmax maximum can take; 0 bins all of ``[0, 1]``).

    Returns
    -------
    list of dict
        Non-empty groups: ``class``, ``bin`` (index), ``low``, ``high``, ``count``, ``mean``.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.stack([np.full((2, 2), v) for v in (1.0, 3.0, 5.0)])
    >>> probs = np.array([[0.9, 0.1], [0.95, 0.05], [0.2, 0.8]])
    >>> [(g["class"], g["bin"], g["count"], float(g["mean"][0, 0]))
    ...  for g in mean_maps_by_confidence(maps, probs, class_names=["a", "b"])]
    [('a', 5, 2, 2.0), ('b', 4, 1, 5.0)]
    """
    stack = as_stack(heatmaps)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != stack.shape[0]:
        raise ValueError(f"probs must be (N, n_classes) with N = {stack.shape[0]}, got {p.shape}")
    names = (np.arange(p.shape[1]).astype(str) if class_names is None
             else np.asarray(class_names, dtype=str))
    pred, conf = p.argmax(axis=1), p.max(axis=1)
    edges = np.linspace(low, 1, n_bins + 1)
    which = confidence_bins(conf, n_bins=n_bins, low=low)
    out = []
    for c in np.unique(pred):
        for b in np.unique(which[pred == c]):
            m = (pred == c) & (which == b)
            out.append({"class": str(names[c]), "bin": int(b), "low": float(edges[b]),
                        "high": float(edges[b + 1]), "count": int(m.sum()),
                        "mean": stack[m].mean(axis=0)})
    return out


def cluster_purity(clusters, labels) -> float:
    """Share of items whose label is the majority label of their cluster.

    Examples
    --------
    >>> cluster_purity([0, 0, 1, 1, 1], ["a", "a", "b", "b", "a"])
    0.8
    """
    clusters, labels = np.asarray(clusters).ravel(), np.asarray(labels).ravel()
    if clusters.size != labels.size or clusters.size == 0:
        raise ValueError(f"need one label per item, got {clusters.size} and {labels.size}")
    hits = 0
    for c in np.unique(clusters):
        _, counts = np.unique(labels[clusters == c], return_counts=True)
        hits += counts.max()
    return float(hits / clusters.size)


def explanation_clusters(heatmaps, labels, *, k: int | None = None, n_components: int = 20,
                         seed: int = 0) -> dict:
    """k-means on explanations (PCA-reduced), and how pure the clusters are in the labels.

    ``k`` defaults to the number of distinct labels (seed 002: k = number of classes).
    Returns ``clusters`` (N,), ``purity`` and ``k``; embed with t-SNE for display elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> left = np.zeros((8, 8)); left[:, :4] = 1
    >>> maps = np.stack([left + 0.1 * rng.normal(size=(8, 8)) for _ in range(10)]
    ...                 + [left[:, ::-1] + 0.1 * rng.normal(size=(8, 8)) for _ in range(10)])
    >>> explanation_clusters(maps, ["x"] * 10 + ["y"] * 10)["purity"]
    1.0
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    stack = as_stack(heatmaps)
    labels = np.asarray(labels).ravel()
    if labels.size != stack.shape[0]:
        raise ValueError(f"{stack.shape[0]} heatmaps but {labels.size} labels")
    k = len(np.unique(labels)) if k is None else int(k)
    if not 1 <= k <= stack.shape[0]:
        raise ValueError(f"k must be in 1..{stack.shape[0]}, got {k}")
    flat = np.nan_to_num(stack.reshape(stack.shape[0], -1))
    n_comp = min(n_components, *flat.shape)
    reduced = PCA(n_components=n_comp, random_state=seed).fit_transform(flat) if n_comp > 1 else flat
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced)
    return {"clusters": clusters, "purity": cluster_purity(clusters, labels), "k": k}


def chance_purity(clusters, labels, *, n_permutations: int = 20, seed: int = 0) -> float:
    """Mean purity of the same clusters against randomly permuted labels (the chance level).

    Examples
    --------
    >>> round(chance_purity([0] * 50 + [1] * 50, ["a", "b"] * 50, seed=1), 1)
    0.5
    """
    labels = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    return float(np.mean([cluster_purity(clusters, rng.permutation(labels))
                          for _ in range(max(1, int(n_permutations)))]))


def embed_and_cluster(heatmaps, *, k: int, seed: int = 0, pca_dims: int = 50,
                      perplexity: float = 30.0, max_iter: int = 500, angle: float = 0.6,
                      n_jobs: int | None = 1) -> dict:
    """t-SNE of the explanations to 2-D, then k-means on the embedding (seed 002).

    Maps are flattened and reduced to ``pca_dims`` principal components first (t-SNE's cost
    grows with the input dimension; 50 is sklearn's advice); the perplexity is capped at
    ``(N - 1) / 3`` so small samples work. 500 iterations (250 of them early exaggeration)
    and a Barnes-Hut ``angle`` of 0.6 keep 2000 maps within a minute on 2 cores
    (``bench/meta.py``); pass ``max_iter=1000, angle=0.5`` for sklearn's defaults.
    ``n_jobs`` also caps the OpenMP/BLAS threads while it runs (None: as they are); on a busy
    2-core machine one thread took a quarter of the CPU time of two.

    Returns
    -------
    dict
        ``embedding`` (N, 2) float, ``clusters`` (N,) int, ``k``, ``perplexity`` (as used).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = np.zeros((6, 6)); a[:3, :3] = 1
    >>> maps = np.stack([a + 0.05 * rng.normal(size=(6, 6)) for _ in range(15)]
    ...                 + [a[::-1, ::-1] + 0.05 * rng.normal(size=(6, 6)) for _ in range(15)])
    >>> out = embed_and_cluster(maps, k=2)
    >>> cluster_purity(out["clusters"], [0] * 15 + [1] * 15)
    1.0
    """
    import inspect
    from contextlib import nullcontext

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    stack = as_stack(heatmaps)
    n = stack.shape[0]
    if n < 4:
        raise ValueError(f"need at least 4 explanations to embed, got {n}")
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    flat = np.nan_to_num(stack.reshape(n, -1).astype(np.float64))
    n_comp = min(int(pca_dims), *flat.shape)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    iters = ("max_iter" if "max_iter" in inspect.signature(TSNE).parameters
             else "n_iter")  # scikit-learn < 1.5
    with nullcontext() if n_jobs is None else threadpool_limits(limits=int(n_jobs)):
        if 1 < n_comp < flat.shape[1]:
            flat = PCA(n_components=n_comp, random_state=seed).fit_transform(flat)
        embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                         angle=float(angle), n_jobs=n_jobs, **{iters: int(max_iter)}
                         ).fit_transform(flat)
        clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding)
    return {"embedding": embedding, "clusters": clusters, "k": k, "perplexity": perplexity}


def confident_disagreements(probs, labels, *, threshold: float = 0.9,
                            class_names=None) -> list[dict]:
    """Patches whose label is known and whose prediction is another class with p > threshold.

    ``labels`` holds class indices, ``-1`` for unlabelled patches (never listed). Seed 002:
    such patches flag mislabelled data or model failures. Sorted by confidence, highest first.

    Returns
    -------
    list of dict
        ``index``, ``label``, ``predicted``, ``p`` (the predicted class's probability),
        ``p_label`` (the label's probability).

    Examples
    --------
    >>> probs = [[0.95, 0.05], [0.2, 0.8], [0.99, 0.01], [0.02, 0.98]]
    >>> [(d["index"], d["predicted"]) for d in confident_disagreements(
    ...     probs, [1, 0, 0, -1], class_names=["a", "b"])]
    [(0, 'a')]
    """
    p = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if p.ndim != 2 or p.shape[0] != labels.size:
        raise ValueError(f"probs must be (N, n_classes) with N = {labels.size}, got {p.shape}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if labels.size and labels.max(initial=-1) >= p.shape[1]:
        raise ValueError(f"labels must be class indices below {p.shape[1]} or -1")
    names = (np.arange(p.shape[1]).astype(str) if class_names is None
             else np.asarray(class_names, dtype=str))
    pred, conf = p.argmax(axis=1), p.max(axis=1)
    hit = np.flatnonzero((labels >= 0) & (pred != labels) & (conf > threshold))
    hit = hit[np.argsort(-conf[hit], kind="stable")]
    return [{"index": int(i), "label": str(names[labels[i]]), "predicted": str(names[pred[i]]),
             "p": float(conf[i]), "p_label": float(p[i, labels[i]])} for i in hit]
