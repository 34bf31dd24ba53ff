"""Strategy clusters of Grad-CAM maps, after SpRAy (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors").

Maps of one predicted class are turned into short feature vectors, joined in
a sparse k-nearest-neighbour graph (N x k edges, never an N x N matrix),
embedded with the graph Laplacian's leading eigenvectors, and clustered with
k-means; the number of clusters is where the Laplacian's eigenvalues jump (the
eigengap, taken on a log scale). A recurring strategy, such as looking at a star next to the galaxy,
shows up as a cluster of its own.

Survey cutouts are centred and have no preferred orientation (training uses
all eight flips and rotations), so the default features are the map's radial
profile around the centre: a star at any position angle counts as the same
strategy. ``features="map"`` clusters the downsampled maps themselves, as the
original SpRAy does, for data where position matters.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import eigsh
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors

from saliency_audit.audit.map_geometry import MapGeometry, place

FEATURES = ("radial", "map")
RADIAL_BINS = 12  # rings from the centre to the corner
MAX_MAP_SIDE = 16
EIGEN_FLOOR = 1e-3  # "map" features: maps are area-pooled to at most this many cells a side


@dataclass
class Clustering:
    labels: np.ndarray  # cluster of each map, 0..n_clusters-1, largest cluster first
    n_clusters: int
    eigenvalues: np.ndarray  # smallest eigenvalues of the normalised Laplacian, ascending


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
