"""Map geometry: derived receptive-field centres against a gradient probe, and the placement."""

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from saliency_audit.audit.map_geometry import MapGeometry, derive_geometry, place, placement_matrix, pool
from saliency_audit.model.factory import build_model, compiled, find_module
from saliency_audit.saliency.localisation import localisation

SIZE = 64


def gradient_magnitude(body: torch.nn.Module, cells: list[tuple[int, int]], seed: int) -> np.ndarray:
    """|d cell / d input| averaged over random inputs and summed over channels, for each cell of ``body``'s output."""
    x = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    magnitudes = []
    for i, j in cells:
        (grad,) = torch.autograd.grad(body(x)[:, :, i, j].sum(), x)
        magnitudes.append(grad.abs().sum(dim=1).mean(dim=0).numpy())
    return np.array(magnitudes)


def centres(magnitudes: np.ndarray) -> np.ndarray:
    """Where each cell looks: the centre of mass of |d cell / d input| when its receptive field lies
    inside the image; its peak when the border cuts it (the mass is then pulled inward).

    The peak of a strided network's mean gradient is a checkerboard of period 2; a 3 x 3 box
    filter removes it before the peak is taken.
    """
    found = []
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for m in magnitudes:
        border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
        if border.max() < 1e-3 * m.max():
            found.append(((m * yy).sum() / m.sum(), (m * xx).sum() / m.sum()))
        else:
            smooth = uniform_filter(m, size=3, mode="constant")
            found.append(np.unravel_index(smooth.argmax(), smooth.shape))
    return np.array(found, dtype=float)


def layer_body(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The model from its input to ``layer``'s output, as one module."""
    names = [name for name, _ in model.body.named_children()]
    last = names.index(layer.removeprefix("body.")) + 1
    return torch.nn.Sequential(*list(model.body.children())[:last]).eval()


LAYERS = [
    ("simple_cnn", "body.0"),
    ("simple_cnn", "body.1"),
    ("simple_cnn", "body.2"),
    *(pytest.param("resnet18", f"body.layer{i}", marks=pytest.mark.slow) for i in range(1, 5)),  # 2 to 12 s each
]


@pytest.mark.parametrize(("arch", "layer"), LAYERS)
def test_derived_centres_agree_with_a_gradient_probe(arch: str, layer: str) -> None:
    """Measured over four initialisations and eight inputs each, the cells look within 1 px of the
    derived centres; the resize placement misses by over 1 px from stride 4 on."""
    torch.manual_seed(0)
    model = build_model(arch, 2)
    geometry = derive_geometry(model, find_module(model, layer), SIZE)
    h, w = layer_body(model, layer)(torch.zeros(1, 3, SIZE, SIZE)).shape[-2:]
    stride = geometry.stride[0]
    cells = [(h // 2, w // 2), (h // 2 - 1, w // 2), (h // 2, w // 2 + 1)]
    magnitude = np.zeros((len(cells), SIZE, SIZE))
    for seed in range(4):
        torch.manual_seed(seed)
        magnitude += gradient_magnitude(layer_body(build_model(arch, 2), layer), cells, seed)
    measured = centres(magnitude)
    rows, cols = geometry.centres((h, w))
    derived = np.array([(rows[i], cols[j]) for i, j in cells])
    assert np.abs(measured - derived).max() <= 1.0, (measured, derived)
    resized = (np.array(cells) + 0.5) * stride - 0.5  # where an align_corners=False resize draws them
    if stride >= 4:
        assert np.abs(measured - resized).max() > 1.0


@pytest.mark.slow
def test_the_compiled_body_looks_where_the_derivation_says() -> None:
    torch.manual_seed(0)
    model = build_model("simple_cnn", 2).eval()
    geometry = derive_geometry(model, find_module(model, "body.2"), SIZE)
    measured = centres(gradient_magnitude(compiled(model.body), [(4, 4), (3, 4)], seed=0))
    rows, cols = geometry.centres((8, 8))
    np.testing.assert_allclose(measured, [(rows[4], cols[4]), (rows[3], cols[4])], atol=1.0)


def test_geometry_of_the_default_layers() -> None:
    """Three 3 x 3 stride-2 convs (padding 1): cell (i, j) looks at pixel (8i, 8j); ResNet-18's layer4: 16 px."""
    for arch, stride in (("simple_cnn", 8.0), ("resnet18", 16.0)):
        model = build_model(arch, 2)
        geometry = derive_geometry(model, find_module(model, model.target_layer), SIZE)
        assert geometry == MapGeometry((0.0, 0.0), (stride, stride))
    stride_one = build_model("simple_cnn", 2, stride=1)
    assert derive_geometry(stride_one, find_module(stride_one, "body.2"), SIZE) == MapGeometry((0, 0), (1, 1))


def test_a_pooling_stem_and_a_layer_off_the_path() -> None:
    stem = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 7, stride=2, padding=3), torch.nn.MaxPool2d(3, 2, padding=1), torch.nn.Conv2d(4, 4, 2, 2)
    )
    assert derive_geometry(stem, stem[2], SIZE) == MapGeometry((2.0, 2.0), (8.0, 8.0))  # ImageNet stem + 2x2 patches
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    with pytest.raises(ValueError, match="not on the path"):
        derive_geometry(model, torch.nn.Conv2d(3, 4, 3), SIZE)


def test_a_one_cell_impulse_lands_on_its_cells_centre() -> None:
    geometry = MapGeometry((0.0, 0.0), (8.0, 8.0))
    rows, cols = geometry.centres((8, 8))
    for i, j in ((0, 0), (3, 3), (2, 7), (7, 7)):
        impulse = np.zeros((1, 8, 8), np.float32)
        impulse[0, i, j] = 1.0
        pixels = place(impulse, geometry, (SIZE, SIZE))[0].numpy()
        assert pixels[int(rows[i]), int(cols[j])] == pytest.approx(1.0)
        assert np.unravel_index(pixels.argmax(), pixels.shape) == (rows[i], cols[j])
        # half way to the next centre, half the value
        if i < 7:
            assert pixels[int(rows[i]) + 4, int(cols[j])] == pytest.approx(0.5)


def test_beyond_the_outermost_centres_the_edge_value_holds() -> None:
    weights = placement_matrix(64, 8, 0.0, 8.0).numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (weights[56:, 7] == 1.0).all()  # rows 57..63 lie past the last centre (56)
    one_cell = placement_matrix(5, 1, 2.0, 8.0).numpy()
    np.testing.assert_allclose(one_cell, 1.0)


def test_pool_is_the_normalised_adjoint_of_place() -> None:
    rng = np.random.default_rng(0)
    geometry = MapGeometry((0.0, 0.0), (8.0, 8.0))
    maps = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    masks = rng.uniform(0, 1, (3, SIZE, SIZE)) > 0.5
    rows, cols = placement_matrix(SIZE, 8, 0, 8), placement_matrix(SIZE, 8, 0, 8)
    norm = rows.sum(dim=0)[:, None] * cols.sum(dim=0)[None, :]
    lhs = (place(maps, geometry, (SIZE, SIZE)) * torch.from_numpy(masks)).sum(dim=(1, 2))
    rhs = (torch.from_numpy(maps) * pool(masks, geometry, (8, 8)) * norm).sum(dim=(1, 2))
    np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), rtol=1e-5)
    np.testing.assert_allclose(pool(np.ones((1, SIZE, SIZE)), geometry, (8, 8)).numpy(), 1.0, rtol=1e-6)


def test_a_small_object_under_its_cell_is_hit_only_by_the_centred_placement() -> None:
    """The case the resize placement gets wrong: a 5 px object at the pixel that cell (3, 3) of a
    simple_cnn map looks at, and a map whose evidence is that one cell."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mask = (np.hypot(yy - 24, xx - 24) <= 1.5)[None]
    impulse = np.zeros((1, 8, 8), np.float32)
    impulse[0, 3, 3] = 1.0
    centred = localisation(impulse, mask, MapGeometry((0.0, 0.0), (8.0, 8.0)))
    resized = localisation(impulse, mask, MapGeometry((3.5, 3.5), (8.0, 8.0)))
    assert centred.pointing_hit[0] == 1.0 and resized.pointing_hit[0] == 0.0
    assert centred.energy_in_object[0] > 1.5 * resized.energy_in_object[0]
