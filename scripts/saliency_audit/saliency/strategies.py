"""Strategy clusters of Grad-CAM maps, after SpRAy (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors").

Maps of one predicted class are turned into short feature vectors, joined in
a sparse k-nearest-neighbour graph (N x k edges, never an N x N matrix),
embedded with the graph Laplacian's leading eigenvectors, and clustered with
k-means; the number of clusters is where the Laplacian's eigenvalues jump (the
eigengap, taken on a log scale). A recurring strategy, such as looking at a star next to the galaxy,
shows up as a cluster of its own.

The default features (``object``) follow the object, not the stamp: the share of
the map's mass on the object and in rings at growing distances from its edge,
so a star at any position angle and at any offset of the object counts as the
same strategy, with the probes' ``background_reliance`` beside them when they
ran. These are few, bounded numbers with no graph structure to speak of:
they are grouped by k-means, the number of clusters chosen by the silhouette
against a single Gaussian family of the same mean and covariance
(``kmeans_clusters``). ``radial`` (the profile around the stamp centre) and
``map`` (the downsampled maps themselves, as the original SpRAy) use the
spectral clustering.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors

from saliency_audit.audit.map_geometry import MapGeometry, place

FEATURES = ("object", "radial", "map")
EDGE_RINGS = (0.0, 4.0)  # px outside the object's edge where each ring starts; the last is open
MIN_CLUSTER = 5  # maps: a smaller group is not a way of deciding
SELECTION_SAMPLE = 2000  # maps that the silhouettes (and each Gaussian draw) are measured on
NULL_DRAWS = 3
RADIAL_BINS = 12  # rings from the centre to the corner
MAX_MAP_SIDE = 16
EIGEN_FLOOR = 1e-3  # "map" features: maps are area-pooled to at most this many cells a side


@dataclass
class Clustering:
    labels: np.ndarray  # cluster of each map, 0..n_clusters-1, largest cluster first
    n_clusters: int
    criterion: np.ndarray  # what chose n_clusters: the Laplacian's smallest eigenvalues, or k-means' silhouettes
    chosen_by: str = "eigengap"  # or "silhouette"


def map_features(maps: np.ndarray | torch.Tensor, features: str, geometry: MapGeometry, image_size: int) -> np.ndarray:
    """N x h x w maps -> N x D non-negative vectors that sum to 1 (0 for an all-zero map)."""
    maps = torch.as_tensor(np.asarray(maps), dtype=torch.float32).clamp(min=0)
    if features == "radial":
        up = place(maps, geometry, (image_size, image_size)).reshape(len(maps), -1)
        centre = (image_size - 1) / 2
        yy, xx = np.mgrid[0:image_size, 0:image_size]
        radius = np.hypot(yy - centre, xx - centre).reshape(-1) / (np.sqrt(2) * (centre + 0.5))
        ring = np.minimum((radius * RADIAL_BINS).astype(int), RADIAL_BINS - 1)
        onehot = torch.from_numpy(np.eye(RADIAL_BINS, dtype=np.float32)[ring])
        # mass per ring divided by the ring's area: a profile, not dominated by the big outer rings
        vectors = (up @ onehot) / onehot.sum(dim=0)
    elif features == "map":
        h, w = maps.shape[1:]
        pooled = F.adaptive_avg_pool2d(maps[:, None], (min(h, MAX_MAP_SIDE), min(w, MAX_MAP_SIDE)))
        vectors = pooled.reshape(len(maps), -1)
    else:
        raise ValueError(f"saliency.clusters.features must be one of {FEATURES}, got {features!r}")
    total = vectors.sum(dim=1, keepdim=True)
    return torch.where(total > 0, vectors / total.clamp(min=1e-30), 0.0).numpy().astype(np.float64)


def object_features(maps: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """B x S x S maps placed on their images and B x S x S object regions -> B x (1 + rings) shares of
    each map's positive mass: on the object, then in each ring of ``EDGE_RINGS`` from its edge outwards.
    A map with no mass or an image without a region is all zero."""
    out = np.zeros((len(maps), len(EDGE_RINGS) + 1))
    edges = np.asarray(EDGE_RINGS[1:] + (np.inf,))
    for k, (map_, region) in enumerate(zip(np.clip(maps, 0, None), objects)):
        total = float(map_.sum())
        if total <= 0 or not region.any():
            continue
        distance = ndimage.distance_transform_edt(~region)  # 0 on the object, px to it elsewhere
        ring = np.where(region, 0, 1 + np.searchsorted(edges, distance, side="left"))
        out[k] = np.bincount(ring.ravel(), weights=map_.ravel(), minlength=len(edges) + 1) / total
    return out


def kmeans_clusters(x: np.ndarray, max_clusters: int, seed: int) -> Clustering:
    """k-means of the rows of ``x`` for k = 2..``max_clusters``; the k of the highest silhouette, kept
    when it beats what the same k-means finds in a single Gaussian family of ``x``'s mean and
    covariance (the best of ``NULL_DRAWS`` draws), else one cluster. A k that leaves a cluster
    of fewer than ``MIN_CLUSTER`` maps is not considered. ``criterion`` holds the silhouettes
    of k = 2, 3, ... (NaN where not considered) and last the Gaussian reference."""
    n = len(x)
    rng = np.random.default_rng(seed)

    def silhouettes(z: np.ndarray) -> tuple[dict[int, float], dict[int, np.ndarray]]:
        scores, labels = {}, {}
        distinct = len(np.unique(z, axis=0))  # k-means cannot make more clusters than distinct rows
        for k in range(2, min(max_clusters, len(z) // MIN_CLUSTER, distinct - 1) + 1):
            found = KMeans(k, n_init=4, random_state=seed).fit_predict(z)
            if np.bincount(found, minlength=k).min() < MIN_CLUSTER:
                continue
            labels[k] = found
            scores[k] = float(silhouette_score(z, found, sample_size=min(len(z), SELECTION_SAMPLE), random_state=seed))
        return scores, labels

    scores, labels = silhouettes(x)
    if not scores:
        return Clustering(np.zeros(n, dtype=int), 1, np.zeros(1), "silhouette")
    cov = np.cov(x, rowvar=False)
    draws = [rng.multivariate_normal(x.mean(axis=0), cov, size=min(n, SELECTION_SAMPLE), method="svd")
             for _ in range(NULL_DRAWS)]  # fmt: skip
    reference = max((max(silhouettes(z)[0].values(), default=-1.0) for z in draws), default=-1.0)
    best = max(scores, key=lambda k: scores[k])
    record = np.array([scores.get(k, np.nan) for k in range(2, max_clusters + 1)] + [reference])
    if scores[best] <= reference:
        return Clustering(np.zeros(n, dtype=int), 1, record, "silhouette")
    order = np.argsort(-np.bincount(labels[best], minlength=best), kind="stable")
    return Clustering(np.argsort(order)[labels[best]], best, record, "silhouette")


def knn_affinity(x: np.ndarray, k: int) -> sp.csr_matrix:
    """Symmetric sparse affinity with self-tuning bandwidths (Zelnik-Manor & Perona 2004)."""
    k = min(k, len(x) - 1)
    distances, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    distances, neighbours = distances[:, 1:], neighbours[:, 1:]
    scale = np.maximum(distances[:, -1], 1e-12)
    rows = np.repeat(np.arange(len(x)), k)
    weights = np.exp(-(distances.reshape(-1) ** 2) / (scale[rows] * scale[neighbours.reshape(-1)]))
    graph = sp.csr_matrix((weights, (rows, neighbours.reshape(-1))), shape=(len(x), len(x)))
    return graph.maximum(graph.T).tocsr()


def spectral_clusters(x: np.ndarray, k_neighbours: int, max_clusters: int, seed: int) -> Clustering:
    """Cluster the rows of ``x``; the number of clusters comes from the eigengap (1 when there is no gap)."""
    n = len(x)
    if n < 3:
        return Clustering(np.zeros(n, dtype=int), 1, np.zeros(min(n, 1)))
    affinity = knn_affinity(x, k_neighbours)
    degree = np.asarray(affinity.sum(axis=1)).reshape(-1)
    inv_sqrt = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
    normalised = inv_sqrt @ affinity @ inv_sqrt
    n_eig = min(max_clusters + 1, n - 1)
    if n <= 200:
        values, vectors = np.linalg.eigh(normalised.toarray())
        values, vectors = values[::-1][:n_eig], vectors[:, ::-1][:, :n_eig]
    else:
        v0 = np.random.default_rng(seed).uniform(0.5, 1.0, n)
        values, vectors = eigsh(normalised, k=n_eig, which="LA", v0=v0, tol=1e-8)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
    laplacian = np.clip(1.0 - values, 0.0, 2.0)  # ascending eigenvalues of I - D^-1/2 W D^-1/2
    # the largest *relative* jump: within-strategy eigenvalues of a kNN graph grow slowly but steadily,
    # so an absolute gap would favour the tail; EIGEN_FLOOR keeps exact zeros (disconnected parts) finite
    n_clusters = int(np.argmax(np.diff(np.log(laplacian[: max_clusters + 1] + EIGEN_FLOOR)))) + 1
    if n_clusters == 1:
        return Clustering(np.zeros(n, dtype=int), 1, laplacian)
    embedding = vectors[:, :n_clusters] * inv_sqrt.diagonal()[:, None]
    embedding /= np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(embedding)
    # name clusters by size, largest first, so the numbering is stable and readable
    order = np.argsort(-np.bincount(labels, minlength=n_clusters), kind="stable")
    return Clustering(np.argsort(order)[labels], n_clusters, laplacian)
