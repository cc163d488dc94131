"""RANet: RCB (Eq. 1-4), RIB (Eq. 5-8), the model contract, the loss and a smoke training.

Every equation is checked on tiny maps against a direct implementation written here with Python
loops over pixels, pairs and regions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import jensenshannon

from gsbench.errors import GsbenchError
from gsbench.losses import build_loss
from gsbench.losses.ranet import RANetLoss
from gsbench.models import build_model
from gsbench.models import ranet_native
from gsbench.models.ranet import (
    RegionAttention,
    RIBLayers,
    _OfficialRegionScores,
    binary_jsd,
    connected_regions,
    first_link_regions,
    jensen_shannon,
    official_interaction,
    official_representatives,
    region_interaction,
    regularised_scores,
    segment_max,
    select_representatives,
)

H, W = 5, 6


# --- slow references ------------------------------------------------------------------------------

def slow_segment_max(boundary: np.ndarray) -> np.ndarray:
    """D_ij: walk the segment one pixel step along its major axis, interpolate along the minor."""
    height, width = boundary.shape
    n = height * width
    out = np.zeros((n, n))
    for i in range(n):
        yi, xi = divmod(i, width)
        for j in range(n):
            yj, xj = divmod(j, width)
            steps = max(abs(yj - yi), abs(xj - xi))
            best = -np.inf
            for t in range(steps + 1):
                if abs(yj - yi) >= abs(xj - xi):  # major axis y
                    y = yi + t * np.sign(yj - yi)
                    x = xi + (xj - xi) * t / steps if steps else xi
                    lo, w = math.floor(x), x - math.floor(x)
                    value = boundary[y, lo] if w == 0 else (
                        (1 - w) * boundary[y, lo] + w * boundary[y, lo + 1])
                else:
                    x = xi + t * np.sign(xj - xi)
                    y = yi + (yj - yi) * t / steps
                    lo, w = math.floor(y), y - math.floor(y)
                    value = boundary[lo, x] if w == 0 else (
                        (1 - w) * boundary[lo, x] + w * boundary[lo + 1, x])
                best = max(best, value)
            out[i, j] = best
    return out


def slow_jsd(prob: np.ndarray) -> np.ndarray:
    """E_ij with SciPy's Jensen-Shannon distance (base 2), squared into the divergence."""
    n = len(prob)
    return np.array([[jensenshannon(prob[i], prob[j], base=2) ** 2 for j in range(n)]
                     for i in range(n)])


def slow_conv3x3(maps: np.ndarray, kernel: np.ndarray, bias: float) -> np.ndarray:
    """Zero-padded 3x3 cross-correlation of each row's h x w map, pixel by pixel."""
    n = maps.shape[0]
    out = np.zeros_like(maps)
    for r in range(n):
        image = maps[r].reshape(H, W)
        for y in range(H):
            for x in range(W):
                total = bias
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        if 0 <= y + dy < H and 0 <= x + dx < W:
                            total += kernel[dy + 1, dx + 1] * image[y + dy, x + dx]
                out[r, y * W + x] = total
    return out


def slow_rib(features, scores, regions, k, intra=True, inter=True):
    """Eq. (6)-(8) written per region, per representative and per pixel."""
    features = features.double()
    scores = scores.double()
    num, channels = features.shape
    members = {}
    for i in range(num):
        members.setdefault(int(regions[i]), []).append(i)
    reps = {}
    for q, pixels in members.items():
        ranked = sorted(pixels, key=lambda i: (-float(scores[i]), i))
        reps[q] = ranked[:k]
    local, glob = {}, {}
    for q, rep_list in reps.items():
        others = [i for i in members[q] if i not in rep_list]
        for p in rep_list:
            value = scores[p] * features[p]
            if intra and others:
                logits = torch.stack([features[p] @ (scores[i] * features[i]) for i in others])
                weights = torch.softmax(logits, 0)
                for w_i, i in zip(weights, others):
                    value = value + w_i * scores[i] * features[i]
            local[p] = value
    for q, rep_list in reps.items():
        for p in rep_list:
            value = scores[p] * local[p]
            if inter:
                for s, other in reps.items():
                    if s == q:
                        continue
                    logits = torch.stack([local[p] @ (scores[i] * local[i]) for i in other])
                    weights = torch.softmax(logits, 0)
                    for w_i, i in zip(weights, other):
                        value = value + w_i * scores[i] * local[i]
            glob[p] = value
    out = torch.zeros(num, channels, dtype=torch.float64)
    for i in range(num):
        q = int(regions[i])
        out[i] = scores[i] * features[i]
        if not intra:
            if i in glob:
                out[i] = out[i] + glob[i]
            continue
        slots = [scores[p] * glob[p] for p in reps[q]]
        logits = torch.stack([features[i] @ z for z in slots])
        weights = torch.softmax(logits, 0)
        for w_i, z in zip(weights, slots):
            out[i] = out[i] + w_i * z
    return out


# --- RCB ------------------------------------------------------------------------------------------

def test_segment_max_matches_slow_walk_and_is_symmetric():
    boundary = torch.rand(H * W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = slow_segment_max(boundary.view(H, W).numpy())
    got = segment_max(boundary, torch.arange(H * W), H, W)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.numpy(), got.numpy().T, atol=1e-12)
    # Sub-blocks of rows give the same rows.
    rows = torch.tensor([3, 17, 29])
    np.testing.assert_allclose(segment_max(boundary, rows, H, W).numpy(), expected[[3, 17, 29]])


def test_segment_max_gradient_goes_to_the_winning_sample():
    """The custom backward equals autograd through a dense max over the slow walk's samples
    (random B: no ties between different samples)."""
    boundary = torch.rand(H * W, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    weights = torch.rand(H * W, H * W, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(2))
    leaf = boundary.clone().requires_grad_()
    (segment_max(leaf, torch.arange(H * W), H, W) * weights).sum().backward()
    expected = torch.zeros(H * W, dtype=torch.float64)
    d = slow_segment_max(boundary.view(H, W).numpy())
    eps = 1e-6
    for k in range(H * W):  # finite differences of sum(w * D), one pixel at a time
        bumped = boundary.clone()
        bumped[k] += eps
        d_bumped = slow_segment_max(bumped.view(H, W).numpy())
        expected[k] = float((torch.from_numpy(d_bumped - d) * weights).sum() / eps)
    torch.testing.assert_close(leaf.grad, expected, rtol=1e-4, atol=1e-4)


def test_segment_max_on_a_wall_separates_its_sides():
    boundary = torch.zeros(H, W, dtype=torch.float64)
    boundary[:, 3] = 1.0  # a vertical wall at x = 3
    d = segment_max(boundary.flatten(), torch.arange(H * W), H, W).view(H, W, H, W)
    assert float(d[0, 0, 4, 2]) == 0.0  # same side
    assert float(d[0, 0, 4, 5]) == 1.0  # across the wall
    assert float(d[2, 3, 2, 3]) == 1.0  # D_ii = B_i: the end points are on the segment


def test_jensen_shannon_matches_scipy():
    generator = torch.Generator().manual_seed(1)
    prob = torch.softmax(3 * torch.randn(H * W, 4, dtype=torch.float64, generator=generator), 1)
    got = jensen_shannon(prob, torch.arange(H * W))
    np.testing.assert_allclose(got.numpy(), slow_jsd(prob.numpy()), atol=1e-10)
    assert float(got.min()) >= 0 and float(got.max()) <= 1


def test_regularised_scores_match_slow_convolution():
    generator = torch.Generator().manual_seed(2)
    attention = torch.rand(7, H * W, dtype=torch.float64, generator=generator)
    kernel = torch.randn(1, 1, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.tensor([0.3], dtype=torch.float64)
    got = regularised_scores(attention, kernel, bias, H, W)
    expected = 1 / (1 + np.exp(-slow_conv3x3(attention.numpy(), kernel[0, 0].numpy(), 0.3)))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def make_module(cue="both", k=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = RegionAttention(8, num_classes=4, num_representatives=k, cue=cue, **kwargs).double()
    with torch.no_grad():  # sharper heads than the init, so that the map splits into regions
        module.score_heads.boundary_head.bias.fill_(-1.0)
        module.score_heads.boundary_head.weight.normal_(0, 0.5)
        module.score_heads.class_head.weight.normal_(0, 3.0)
        module.score_weight.add_(0.3 * torch.randn(1, 1, 3, 3, dtype=torch.float64))
    return module


@pytest.mark.parametrize("cue", ["both", "boundary", "semantic"])
def test_pair_scores_regions_and_representative_scores_match_slow(cue):
    # 1 - E alone rarely drops below 0.5 with 4 classes: group at the official 0.8 there.
    module = make_module(cue, region_threshold=0.8 if cue == "semantic" else 0.5)
    features = torch.randn(1, 8, H, W, dtype=torch.float64)
    boundary = torch.sigmoid(module.score_heads.boundary_head(features)).flatten()
    prob = torch.softmax(module.score_heads.class_head(features), 1)[0].reshape(4, -1).T
    # F (Eq. 3) and F^g (Eq. 4)
    d = slow_segment_max(boundary.detach().view(H, W).numpy())
    e = slow_jsd(prob.detach().numpy())
    f = {"both": (1 - d) * (1 - e), "boundary": 1 - d, "semantic": 1 - e}[cue]
    fg = 1 / (1 + np.exp(-slow_conv3x3(f, module.score_weight[0, 0].detach().numpy(),
                                       float(module.score_bias.detach()))))
    got = module.pair_scores(boundary, prob, torch.arange(H * W), H, W)
    np.testing.assert_allclose(got.detach().numpy(), fg, atol=1e-10)
    # G (Eq. 4), its connected components and the official first-link regions
    g = (fg + fg.T) / 2 > module.region_threshold
    count, labels = connected_components(csr_matrix(g), directed=False)
    module.grouping = "components"
    components = module.regions(boundary, prob, H, W).numpy()
    assert 1 < count < H * W, "the test map should split into several regions"
    np.testing.assert_array_equal(components[:, None] == components[None, :],
                                  labels[:, None] == labels[None, :])
    assert components.max() + 1 == count
    module.grouping = "first_link"
    regions = module.regions(boundary, prob, H, W).numpy()
    expected = slow_first_link(g)
    np.testing.assert_array_equal(regions[:, None] == regions[None, :],
                                  expected[:, None] == expected[None, :])
    same_expected = regions[:, None] == regions[None, :]
    # J (Eq. 5): the mean of F^g over the region
    j_expected = np.array([fg[i, same_expected[i]].mean() for i in range(H * W)])
    j = module.representative_scores(boundary, prob, torch.from_numpy(regions), H, W)
    np.testing.assert_allclose(j.detach().numpy(), j_expected, atol=1e-10)


def slow_first_link(g: np.ndarray) -> np.ndarray:
    """Official rule: link to the first j <= i grouped with i, follow links to the root."""
    n = len(g)
    parent = [next((j for j in range(i + 1) if g[i, j]), i) for i in range(n)]
    roots = []
    for i in range(n):
        r = i
        while parent[r] != r:
            r = parent[r]
        roots.append(r)
    return np.array(roots)


def test_first_link_regions_match_slow_rule_on_random_graphs():
    generator = torch.Generator().manual_seed(5)
    for density in (0.02, 0.05, 0.2):
        a = torch.rand(40, 40, generator=generator) < density
        a = a | a.T
        blocks = list(torch.arange(40).split(7))
        got = first_link_regions(lambda rows: a[rows], 40, torch.device("cpu"), blocks).numpy()
        expected = slow_first_link(a.numpy())
        np.testing.assert_array_equal(got[:, None] == got[None, :],
                                      expected[:, None] == expected[None, :])
        assert got.max() + 1 == len(set(expected))


def test_connected_regions_match_scipy_on_random_graphs():
    generator = torch.Generator().manual_seed(3)
    for density in (0.02, 0.05, 0.2):
        a = torch.rand(40, 40, generator=generator) < density
        a = a | a.T
        blocks = list(torch.arange(40).split(7))
        got = connected_regions(lambda rows: a[rows], 40, torch.device("cpu"), blocks).numpy()
        _, labels = connected_components(csr_matrix(a.numpy()), directed=False)
        np.testing.assert_array_equal(got[:, None] == got[None, :],
                                      labels[:, None] == labels[None, :])


def test_chunked_module_equals_unchunked_with_gradients():
    features = torch.randn(2, 8, H, W, dtype=torch.float64, requires_grad=True)
    results = []
    for chunk in (4 * 30 * 6, 10**9):  # blocks of 4 rows (the last one shorter) / one block
        module = make_module(max_chunk_elements=chunk)
        outputs = module(features)
        grads = torch.autograd.grad(sum((o ** 2).sum() for o in outputs),
                                    [features, *module.parameters()])
        results.append(outputs + grads)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_representative_scores_gradient_matches_finite_differences():
    module = make_module(max_chunk_elements=50)
    with torch.no_grad():  # no probability near 0, where the finite differences leave [0, 1]
        module.score_heads.class_head.weight.normal_(0, 0.5)
    features = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    boundary = torch.sigmoid(module.score_heads.boundary_head(features)).flatten().detach()
    prob = torch.softmax(module.score_heads.class_head(features), 1)[0].reshape(4, -1).T.detach()
    regions = module.regions(boundary, prob, 3, 4)

    def scores(b, p):
        return module.representative_scores(b, p, regions, 3, 4)

    assert torch.autograd.gradcheck(scores, (boundary.requires_grad_(), prob.requires_grad_()),
                                    fast_mode=True)


# --- RIB ------------------------------------------------------------------------------------------

def test_select_representatives_takes_the_top_k_of_each_region():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.5, 0.7, 0.2, 0.8])
    regions = torch.tensor([0, 0, 1, 0, 1, 2, 0])
    reps = select_representatives(scores, regions, 3, 2)
    assert reps.tolist() == [[1, 6], [4, 2], [5, -1]]


@pytest.mark.parametrize("intra,inter", [(True, True), (False, True), (True, False)])
def test_region_interaction_matches_slow_equations(intra, inter):
    generator = torch.Generator().manual_seed(4)
    num, channels, k = 30, 5, 3
    features = 0.5 * torch.randn(num, channels, dtype=torch.float64, generator=generator)
    scores = torch.rand(num, dtype=torch.float64, generator=generator)
    sizes = torch.tensor([0] * 12 + [1] * 2 + [2] * 9 + [3] * 7)
    regions = sizes[torch.randperm(num, generator=generator)]
    reps = select_representatives(scores, regions, 4, k)
    expected = slow_rib(features, scores, regions, k, intra, inter)
    for chunk in (10**9, 2 * k * channels):  # one block / blocks of 2 pixels
        got = region_interaction(features, scores, regions, reps, intra, inter, chunk)
        torch.testing.assert_close(got, expected)


# --- model, loss, recipes -------------------------------------------------------------------------

VARIANTS = [
    {},
    {"context": "spp"},
    {"context": "nonlocal"},
    {"cue": "boundary"},
    {"cue": "semantic"},
    {"intra": False},
    {"inter": False},
    {"num_representatives": 2},
    {"grouping": "components"},
]


def variant_id(options: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "ranet"


@pytest.mark.parametrize("options", VARIANTS, ids=variant_id)
def test_model_contract_and_finite_gradients(options):
    torch.manual_seed(0)
    model = build_model("ranet", num_classes=19, backbone="resnet_tiny", aux=True, **options)
    images = torch.randn(2, 3, 32, 48)
    labels = torch.randint(0, 19, (2, 32, 48))
    edges = (torch.rand(2, 32, 48) < 0.2).float()
    model.train()
    outputs = model(images)
    assert outputs["out"].shape == (2, 19, 32, 48) and outputs["aux"].shape == (2, 19, 32, 48)
    region = options.get("context", "region") == "region"
    assert ("boundary" in outputs) == region and ("coarse" in outputs) == region
    if region:
        assert outputs["boundary"].shape == (2, 1, 32, 48)
        assert outputs["coarse"].shape == (2, 19, 32, 48)
    losses = build_loss("ranet", ignore_index=255, aux_weight=0.4)(
        outputs, {"label": labels, "edge": edges})
    losses["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    model.eval()
    with torch.no_grad():
        assert set(model(images)) == {"out"}


def test_loss_adds_coarse_and_boundary_terms_and_checks_its_inputs():
    torch.manual_seed(0)
    label = torch.randint(0, 3, (1, 4, 5))
    label[0, 0, 0] = 255
    edge = (torch.rand(1, 4, 5) < 0.3).float()
    outputs = {"out": torch.randn(1, 3, 4, 5), "coarse": torch.randn(1, 3, 4, 5),
               "boundary": torch.randn(1, 1, 4, 5)}
    loss = RANetLoss(coarse_weight=0.5, boundary_weight=2.0)
    result = loss(outputs, {"label": label, "edge": edge})
    ce = F.cross_entropy(outputs["out"], label, ignore_index=255)
    coarse = F.cross_entropy(outputs["coarse"], label, ignore_index=255)
    p = torch.sigmoid(outputs["boundary"][:, 0])
    bce = -(edge * p.log() + (1 - edge) * (1 - p).log()).mean()
    torch.testing.assert_close(result["loss"], ce + 0.5 * coarse + 2.0 * bce)
    with pytest.raises(GsbenchError, match='"edge"'):
        RANetLoss()(outputs, {"label": label})
    with pytest.raises(GsbenchError, match="boundary"):
        RANetLoss()(outputs, {"label": label, "edge": edge[:, :3]})
    with pytest.raises(GsbenchError, match="coarse_weight"):
        RANetLoss(coarse_weight=-1)


def test_bad_options_raise_gsbench_errors():
    for options, message in [({"context": "aspp"}, "context"), ({"cue": "edges"}, "cue"),
                             ({"num_representatives": 0}, "num_representatives"),
                             ({"region_threshold": 1.5}, "region_threshold"),
                             ({"grouping": "mean_shift"}, "grouping")]:
        with pytest.raises(GsbenchError, match=message):
            build_model("ranet", num_classes=19, backbone="resnet_tiny", **options)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_full_recipe_model_size_on_meta_device():
    from gsbench.analysis.complexity import count_parameters
    from gsbench.recipes import build_model_from_recipe, load_recipe

    recipe = load_recipe("ranet101")
    assert (recipe.data.crop_size, recipe.train.batch_size, recipe.train.iterations,
            recipe.train.lr) == ([769, 769], 8, 40000, 0.001)
    assert (recipe.train.weight_decay, recipe.train.head_lr_mult) == (5e-4, 1.0)
    with torch.device("meta"):
        model = build_model_from_recipe(recipe)
    head = model.decode_head
    conv = 512 * 9 * 512 + 2 * 512  # 3x3 512 -> 512 + BN
    # feats_conv 3x3 2048->512, query / value / collect / interact / distribute, final_conv
    # 3x3 1024->512, classifier, final boundary head; the stage-3 branch 3x3 1024->512 (bias)
    # + BN with its class and two-class boundary heads (RANet networks/ranet.py).
    rib = (2048 * 9 * 512 + 2 * 512) + 5 * conv
    assert rib == 21_239_808  # Table 3: +21 M
    expected = rib + (1024 * 9 * 512 + 2 * 512) + (512 * 19 + 19) + (512 * 2 + 2) + (
        1024 * 9 * 512 + 512 + 2 * 512) + (512 * 19 + 19) + (512 * 2 + 2)
    assert count_parameters(head) == expected
    dilations = [block.conv2.dilation[0] for block in model.backbone.layer4]
    assert dilations == [16, 32, 64]  # multi-grid (4, 8, 16) on dilation 4
    for k in (2, 4, 6, 10, 12):
        assert load_recipe(f"ranet101_k{k}").model.num_representatives == k


# --- smoke training -------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_training_learns_on_synthetic_data(tmp_path):
    from gsbench.data.synthetic import prepare_synthetic
    from gsbench.engine.train import train
    from gsbench.metrics.confusion import ConfusionMatrix
    from gsbench.recipes import load_recipe

    manifest = prepare_synthetic(tmp_path / "data", n_train=12, n_val=4, size=(64, 128),
                                 workers=1, progress=False)
    recipe = load_recipe("ranet101-smoke", [
        "train.iterations=80", "train.batch_size=4", "train.lr=0.02", "train.val_every=80",
        "train.log_every=10", "train.checkpoint_every=80", "data.scale_range=[0.75,1.5]",
        "data.rotate_degrees=0", "data.blur_prob=0"])
    torch.set_num_threads(1)
    result = train(recipe, tmp_path / "run", data_root=manifest.root, quiet=True)
    losses = [row["loss"] for row in result.log if "loss" in row]
    assert losses[-1] < 0.7 * losses[0]
    # The trivial predictor: always the most frequent training class.
    from gsbench.data.dataset import SegmentationDataset

    train_labels = [SegmentationDataset(manifest, "train", with_edges=False)[i]["label"]
                    for i in range(len(manifest.splits["train"]))]
    counts = np.bincount(np.concatenate([t.numpy().ravel() for t in train_labels]), minlength=256)
    majority = int(np.argmax(counts[:19]))
    confusion = ConfusionMatrix(19)
    val = SegmentationDataset(manifest, "val", with_edges=False)
    for i in range(len(val)):
        label = val[i]["label"].numpy().astype(np.uint8)
        confusion.update(np.full_like(label, majority), label)
    trivial = confusion.compute()["miou"]  # a fraction in [0, 1], as the run's metrics
    miou = result.metrics["miou"]
    assert miou > max(2 * trivial, trivial + 0.03), (miou, trivial)


# --- the released forms against direct restatements of the official computation ------------------
# RANet dca108e: ops/match_boundary, ops/match_class, networks/ranet.py (RCB, RIB), loops below.

def slow_official_d(boundary: np.ndarray, i: int, j: int) -> float:
    """D_ij of the released op: walk the interior k = 1..L-1 of the major axis (x on ties) in
    float32, minor coordinate start + k * (d_minor / d_major) clamped at 0, a sample on the
    last row (x major) / column (y major) reading 0, the running maximum starting at 0."""
    f32 = np.float32
    height, width = boundary.shape
    (yi, xi), (yj, xj) = divmod(i, width), divmod(j, width)
    dy, dx = yj - yi, xj - xi
    best = f32(0)
    if abs(dx) >= abs(dy) and dx != 0:
        rate = f32(dy) / f32(dx)
        for k in range(1, abs(dx)):
            offset = f32(k) * rate
            y = max(f32(yi) + (offset if dx > 0 else -offset), f32(0))
            x = xi + k if dx > 0 else xi - k
            low = int(y)
            if low < height - 1:
                best = max(best, (y - f32(low)) * boundary[low + 1, x]
                           + (f32(low + 1) - y) * boundary[low, x])
    elif abs(dy) > abs(dx):
        rate = f32(dx) / f32(dy)
        for k in range(1, abs(dy)):
            offset = f32(k) * rate
            x = max(f32(xi) + (offset if dy > 0 else -offset), f32(0))
            y = yi + k if dy > 0 else yi - k
            low = int(x)
            if low < width - 1:
                best = max(best, (x - f32(low)) * boundary[y, low + 1]
                           + (f32(low + 1) - x) * boundary[y, low])
    return float(best)


def slow_official_e(prob: np.ndarray, i: int, j: int) -> float:
    """E_ij of the released op: the JSD in nats of Bernoulli(p), Bernoulli(q), p and q the
    probabilities of i's argmax class at i and j, clipped into [0.001, 0.99]."""
    c = int(np.argmax(prob[i]))
    p, q = (min(max(float(prob[n, c]), 0.001), 0.99) for n in (i, j))
    m = (p + q) / 2
    return 0.5 * (p * math.log(p / m) + (1 - p) * math.log((1 - p) / (1 - m))
                  + q * math.log(q / m) + (1 - q) * math.log((1 - q) / (1 - m)))


def slow_official_regions_and_scores(f: np.ndarray, threshold: float = 0.8):
    """FollowCluster on S = (F + F^T) / 2 (first j <= i with S_ij > t), the links followed
    to their roots, ids by root order; J_i = (sum of F_ij over i's region) / |region|."""
    s = (f + f.T) / 2
    n = len(f)
    parent = [next(j for j in range(i + 1) if s[i, j] > threshold) for i in range(n)]
    roots = []
    for i in range(n):
        r = i
        while parent[r] != r:
            r = parent[r]
        roots.append(r)
    ids = {r: q for q, r in enumerate(sorted(set(roots)))}
    regions = np.array([ids[r] for r in roots])
    scores = np.array([f[i, regions == regions[i]].sum() / (regions == regions[i]).sum()
                       for i in range(n)])
    return regions, scores


def official_maps(height=7, width=9, classes=5, seed=3):
    """B with a bright last row and column (the op's zero-sample quirk matters) and blocky,
    confident class maps, so that the map splits into several regions."""
    rng = np.random.default_rng(seed)
    boundary = (rng.random((height, width)) ** 3).astype(np.float32)
    boundary[-1, :] = boundary[:, -1] = 0.9
    blocks = rng.integers(0, classes, (3, 3))
    cls = blocks[np.arange(height) * 3 // height][:, np.arange(width) * 3 // width]
    logits = rng.normal(size=(height * width, classes)) + 6 * np.eye(classes)[cls.ravel()]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return boundary, prob.astype(np.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # compiled kernel / PyTorch
def test_official_segment_max_matches_the_released_walk(dtype):
    boundary, _ = official_maps()
    height, width = boundary.shape
    n = height * width
    expected = np.array([[slow_official_d(boundary, i, j) for j in range(n)] for i in range(n)])
    flat = torch.from_numpy(boundary).reshape(-1).to(dtype)
    got = segment_max(flat, torch.arange(n), height, width, form="official")
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    # the quirk: along the bright last row every interior sample reads 0
    last = (height - 1) * width
    assert float(got[last, last + 4]) == 0.0 and expected[last, last + 4] == 0.0
    assert float(got[0, 4]) > 0 and float(got[0, 0]) == 0.0 and float(got[0, 1]) == 0.0
    # pairs (rows[p], cols[p]) give the same values as the dense rows
    rows, cols = torch.tensor([3, 17, 62, 40]), torch.tensor([60, 2, 8, 40])
    pairs = segment_max(flat, rows, height, width, cols=cols, form="official")
    np.testing.assert_allclose(pairs.numpy(), expected[rows, cols], atol=1e-6)


def test_official_semantic_distance_matches_the_released_formula():
    _, prob = official_maps()
    n = len(prob)
    expected = np.array([[slow_official_e(prob.astype(np.float64), i, j) for j in range(n)]
                         for i in range(n)])
    got = binary_jsd(torch.from_numpy(prob).double(), torch.arange(n))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    assert not np.allclose(expected, expected.T)  # i's argmax class: not symmetric
    assert expected.max() <= 0.6612


def official_module(cue="both", **kwargs):
    return RegionAttention(8, num_classes=5, cue=cue, segment_samples="official",
                           semantic_distance="official", region_score="official",
                           region_threshold=0.8, **kwargs)


@pytest.mark.parametrize("cue", ["both", "boundary", "semantic"])
def test_official_regions_and_representative_scores_match_the_released_rule(cue):
    boundary, prob = official_maps()
    height, width = boundary.shape
    n = height * width
    d = np.array([[slow_official_d(boundary, i, j) for j in range(n)] for i in range(n)])
    e = np.array([[slow_official_e(prob.astype(np.float64), i, j) for j in range(n)]
                  for i in range(n)])
    f = {"both": (1 - d) * (1 - e), "boundary": 1 - d, "semantic": 1 - e}[cue]
    regions, scores = slow_official_regions_and_scores(f)
    assert 1 < regions.max() + 1 < n or cue == "boundary"
    module = official_module(cue)
    b, p = torch.from_numpy(boundary).reshape(-1), torch.from_numpy(prob)
    # the dense path (float64: PyTorch walks) and the compiled path without an hw x hw table
    dense = module.regions(b.double(), p.double(), height, width)
    np.testing.assert_array_equal(dense.numpy(), regions)
    dense_j = module.representative_scores(b.double(), p.double(), dense, height, width)
    np.testing.assert_allclose(dense_j.numpy(), scores, atol=1e-6)
    fast_j, fast = _OfficialRegionScores.apply(b, p, (ranet_native.kernels(), height, width,
                                                      cue, 0.8))
    np.testing.assert_array_equal(fast.numpy(), regions)
    np.testing.assert_allclose(fast_j.numpy(), scores, atol=1e-5)


@pytest.mark.parametrize("cue", ["both", "boundary", "semantic"])
def test_official_fast_path_gradients_equal_the_dense_path(cue):
    boundary, prob = official_maps(seed=5)
    height, width = boundary.shape
    module = official_module(cue)
    weights = torch.randn(height * width, dtype=torch.float64)
    b = torch.from_numpy(boundary).reshape(-1).double().requires_grad_()
    p = torch.from_numpy(prob).double().requires_grad_()
    regions = module.regions(b.detach(), p.detach(), height, width)
    (module.representative_scores(b, p, regions, height, width) * weights).sum().backward()
    b32 = torch.from_numpy(boundary).reshape(-1).requires_grad_()
    p32 = torch.from_numpy(prob).requires_grad_()
    scores, _ = _OfficialRegionScores.apply(b32, p32, (ranet_native.kernels(), height, width,
                                                       cue, 0.8))
    (scores * weights.float()).sum().backward()
    torch.testing.assert_close(b32.grad.double(), b.grad, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(p32.grad.double(), p.grad, atol=2e-5, rtol=1e-4)
    if cue != "semantic":
        assert b.grad.abs().max() > 0


def test_compiled_kernel_is_used_and_the_pytorch_walk_is_its_fallback(monkeypatch):
    assert ranet_native.kernels() is not None  # a C compiler is part of the test setup
    boundary, _ = official_maps()
    flat = torch.from_numpy(boundary).reshape(-1)
    rows = torch.arange(boundary.size)
    native = segment_max(flat, rows, *boundary.shape, form="paper")
    monkeypatch.setattr(ranet_native, "kernels", lambda: None)
    fallback = segment_max(flat, rows, *boundary.shape, form="paper")
    torch.testing.assert_close(native, fallback, atol=1e-6, rtol=0)


def slow_official_rib(value, query, scores, reps):
    """The released RIB written per representative and per pixel (no learned layers)."""
    value, query, scores = value.double(), query.double(), scores.double()
    reps = sorted(int(r) for r in reps)
    collected = []
    for s in reps:
        logits = torch.stack([value[s] @ (scores[n] * value[n]) for n in range(len(value))])
        collected.append(value[s] + torch.softmax(logits, 0) @ value)
    interacted = []
    for a in range(len(reps)):
        logits = torch.stack([collected[a] @ (scores[t] * collected[b])
                              for b, t in enumerate(reps)])
        weights = torch.softmax(logits, 0)
        interacted.append(collected[a] + sum(w * c for w, c in zip(weights, collected)))
    out = torch.empty_like(query)
    for n in range(len(query)):
        logits = torch.stack([query[n] @ (scores[t] * interacted[b]) for b, t in enumerate(reps)])
        weights = torch.softmax(logits, 0)
        out[n] = query[n] + sum(w * i for w, i in zip(weights, interacted))
    return out


def test_official_interaction_matches_the_released_rib():
    generator = torch.Generator().manual_seed(2)
    value = 0.3 * torch.randn(20, 6, dtype=torch.float64, generator=generator)
    query = 0.3 * torch.randn(20, 6, dtype=torch.float64, generator=generator)
    scores = torch.rand(20, dtype=torch.float64, generator=generator)
    regions = torch.tensor([0] * 8 + [1] * 5 + [2] * 7)[torch.randperm(20, generator=generator)]
    reps = official_representatives(select_representatives(scores, regions, 3, 3))
    assert reps.tolist() == sorted(reps.tolist()) and len(reps) == 9
    got = official_interaction(value, query, scores, reps)
    torch.testing.assert_close(got, slow_official_rib(value, query, scores, reps))


def test_rib_layer_along_the_representatives_is_the_conv_on_a_one_column_image():
    torch.manual_seed(0)
    layers = RIBLayers(6).double().eval()
    values = torch.randn(7, 6, dtype=torch.float64)
    got = RIBLayers.along_representatives(layers.collect, values)
    conv, bn, act = layers.collect
    image = values.T.reshape(1, 6, 7, 1)
    expected = act(bn(F.conv2d(image, conv.weight, padding=1))).reshape(6, 7).T
    torch.testing.assert_close(got, expected)
    # only the kernel's middle column meets data: neighbours in list order are mixed
    middle = conv.weight[:, :, :, 1]
    manual = sum(F.pad(values, (0, 0, 1, 1))[a:a + 7] @ middle[:, :, a].T for a in range(3))
    torch.testing.assert_close(act(bn(manual.T.reshape(1, 6, 7, 1))).reshape(6, 7).T, got)


def test_official_loss_weights_and_two_class_boundary_terms():
    torch.manual_seed(0)
    label = torch.randint(0, 3, (1, 4, 5))
    edge = (torch.rand(1, 4, 5) < 0.3).float()
    outputs = {"out": torch.randn(1, 3, 4, 5), "coarse": torch.randn(1, 3, 4, 5),
               "boundary": torch.randn(1, 2, 4, 5), "final_boundary": torch.randn(1, 2, 4, 5)}
    loss = RANetLoss(aux_weight=0.4, coarse_weight=0.4, boundary_weight=0.08,
                     final_boundary_weight=0.2)
    result = loss(outputs, {"label": label, "edge": edge})
    ce = [F.cross_entropy(outputs[k], t) for k, t in
          (("out", label), ("coarse", label), ("final_boundary", edge.long()),
           ("boundary", edge.long()))]
    torch.testing.assert_close(result["loss"], ce[0] + 0.4 * ce[1] + 0.2 * ce[2] + 0.08 * ce[3])


def test_official_model_outputs_and_gradients():
    torch.manual_seed(0)
    model = build_model("ranet", num_classes=19, backbone="resnet_tiny", aux=False,
                        segment_samples="official", semantic_distance="official",
                        region_score="official", score_source="official",
                        rib_attention="official", region_threshold=0.8)
    outputs = model.train()(torch.randn(2, 3, 32, 48))
    assert outputs["boundary"].shape == outputs["final_boundary"].shape == (2, 2, 32, 48)
    losses = build_loss("ranet", ignore_index=255, aux_weight=0.4)(
        outputs, {"label": torch.randint(0, 19, (2, 32, 48)),
                  "edge": (torch.rand(2, 32, 48) < 0.2).float()})
    losses["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.decode_head.context.score_weight is None  # no W^g
