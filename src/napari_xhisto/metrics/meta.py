"""Meta-explanations over many patches (seed 002): mean maps per class and confidence bin, and
clusters of explanations with their class purity.
"""

from __future__ import annotations

import numpy as np

from ._common import as_stack

__all__ = ["cluster_purity", "explanation_clusters", "mean_maps_by_confidence"]


def mean_maps_by_confidence(heatmaps, probs, *, n_bins: int = 6, class_names=None) -> list[dict]:
    """Mean heatmap per predicted class and confidence bin (equal-width bins on [0, 1]).

    Parameters
    ----------
    heatmaps : (N, H, W) array
        One explanation per patch (for its predicted class).
    probs : (N, C) array
        Class probabilities; the prediction is the argmax, the confidence its probability.
    n_bins : int
        Confidence bins (6 in seed 002).

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
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
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
