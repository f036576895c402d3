"""Sparse Temporal Transformer: key selection, query selection (NSM), attention, dense reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stt_ros.model.stt import (
    ATTN_TILE,
    EXPORT_LAYOUTS,
    TOPK_LIMIT,
    SparseTemporalTransformer,
    dense_temporal_attention,
    key_half_widths,
    key_index_table,
    key_size,
    nsm_score,
    query_tiles,
    select_queries,
    tile_tables,
    window_keys,
)
from stt_testing.stt_inputs import make_memory

# The seed's ablation table: (s, e, eps) -> key size per query, T = 7 on a 64x128 feature map.
SEED_KEY_SIZES = [((1, 5, 1), 527), ((2, 5, 1), 639), ((3, 5, 1), 735), ((1, 3, 1), 279),
                  ((1, 7, 1), 679), ((1, 5, 2), 663), ((1, 5, 3), 695)]


@pytest.mark.parametrize(("schedule", "expected"), SEED_KEY_SIZES)
def test_key_size_matches_seed_table(schedule: tuple[int, int, int], expected: int) -> None:
    halves = key_half_widths(7, *schedule)
    assert key_size(halves) == expected
    pos, inside, frame = key_index_table(64, 128, tuple(halves))
    assert pos.shape == (64 * 128, expected)
    # a query away from the borders sees every key of its windows
    centre = 32 * 128 + 64
    assert int(inside[centre].sum()) == expected
    # nearest frame (k = 0) has the smallest window, of half-width s
    assert int((frame == 0).sum()) == (2 * schedule[0] + 1) ** 2


def test_dense_key_size_is_every_position_of_every_frame() -> None:
    halves = (127,) * 7  # windows covering the whole 64x128 map from any query
    queries = torch.tensor([0, 5 * 128 + 7, 64 * 128 - 1])  # two corners and one inner position
    pos, inside, frame = window_keys(64, 128, halves, queries)
    counts = inside.sum(1)
    assert int(counts.min()) == int(counts.max()) == 7 * 64 * 128 == 57344
    for q in range(len(queries)):  # each in-map key of a frame appears exactly once per query
        for k in range(7):
            keys = pos[q][inside[q] & (frame == k)]
            assert keys.unique().numel() == keys.numel() == 64 * 128


def test_half_widths_nearest_first() -> None:
    # l_t = min(s + (T - t) * eps, e) with t = T the most recent: listed nearest first
    assert key_half_widths(7, 1, 5, 1) == [1, 2, 3, 4, 5, 5, 5]
    assert key_half_widths(7, 1, 5, 3) == [1, 4, 5, 5, 5, 5, 5]
    assert key_half_widths(3, 2, 9, 0) == [2, 2, 2]


def test_borders_are_padded_not_clamped() -> None:
    pos, inside, frame = key_index_table(8, 10, (2,))
    corner = inside[0].view(5, 5)  # query at (0, 0): only the lower-right 3x3 of its window is inside
    assert corner.sum() == 9 and corner[2:, 2:].all()
    assert set(pos[0][inside[0]].tolist()) == {y * 10 + x for y in range(3) for x in range(3)}


def nsm_numpy(q: np.ndarray, r: int) -> np.ndarray:
    """Direct per-position computation of D_KL(uniform || p_sim) + D_cos."""
    c, h, w = q.shape
    p = r // 2
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            centre = q[:, y, x]
            nbrs = [q[:, yy, xx] for yy in range(y - p, y + p + 1) for xx in range(x - p, x + p + 1)
                    if (yy, xx) != (y, x) and 0 <= yy < h and 0 <= xx < w]
            nb = np.stack(nbrs)
            dots = nb @ centre
            p_sim = np.exp(dots - dots.max())
            p_sim /= p_sim.sum()
            u = np.full(len(nbrs), 1 / len(nbrs))
            kl = float(np.sum(u * np.log(u / p_sim)))
            cos = nb @ centre / (np.linalg.norm(nb, axis=1) * np.linalg.norm(centre))
            out[y, x] = kl + float(np.mean(1 - cos))
    return out


@pytest.mark.parametrize("r", [3, 5])
def test_nsm_matches_numpy(r: int) -> None:
    g = torch.Generator().manual_seed(r)
    q = torch.randn(2, 6, 7, 9, generator=g, dtype=torch.float64)
    got = nsm_score(q, r)
    for b in range(2):
        np.testing.assert_allclose(got[b].numpy(), nsm_numpy(q[b].numpy(), r), rtol=1e-9, atol=1e-9)
    assert (got >= -1e-9).all()  # KL >= 0 and cosine distance >= 0


def two_region_features(c: int = 16, h: int = 16, w: int = 32, split: int = 13) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    feat = torch.empty(1, c, h, w)
    feat[..., :split] = a[:, None, None]
    feat[..., split:] = b[:, None, None]
    return feat


def test_selected_queries_lie_on_the_boundary() -> None:
    r, split, w = 5, 13, 32
    feat = two_region_features(split=split, w=w)
    score = nsm_score(feat, r)[0]
    cols = torch.arange(w)
    near = ((cols - split).abs() <= r // 2) | ((cols - (split - 1)).abs() <= r // 2)
    assert torch.allclose(score[:, ~near], torch.zeros(()), atol=1e-5)  # flat regions score 0
    assert (score[:, (cols == split) | (cols == split - 1)] > 1e-3).all()
    # through the module (query projection included): every selected query is on the boundary
    stt = SparseTemporalTransformer(16, query_ratio=0.1, attn_dim=8)
    with torch.no_grad():
        sel = stt.select(stt.q_proj(feat))[0]
    xs = sel % w
    assert sel.numel() == round(0.1 * 16 * w)
    assert ((xs - split).abs() <= r // 2).logical_or((xs - (split - 1)).abs() <= r // 2).all(), xs.tolist()


def test_query_tiles_respect_tensorrt_topk_limit() -> None:
    tiles = query_tiles(128, 256, 0.5)  # 1024x2048 input
    assert len(tiles) == 5 and all(k <= TOPK_LIMIT for _, _, k in tiles)
    assert tiles[0][0] == 0 and tiles[-1][1] == 128
    assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:], strict=False))
    assert abs(sum(k for *_, k in tiles) - 0.5 * 128 * 256) <= len(tiles)
    assert query_tiles(64, 128, 0.5) == [(0, 32, 2048), (32, 64, 2048)]
    assert query_tiles(32, 64, 0.5) == [(0, 32, 1024)]  # one tile: the global top-k
    assert query_tiles(64, 128, 0.0) == []
    with pytest.raises(ValueError, match="top-k"):
        query_tiles(4, 10000, 1.0, tiles=4)


def test_tile_selection_takes_each_tiles_share() -> None:
    score = torch.zeros(1, 8, 10)
    score[0, :4] = torch.rand(4, 10) + 10  # the top tile scores far higher
    sel = select_queries(score, query_tiles(8, 10, 0.5, tiles=2))[0]
    rows = sel // 10
    assert (rows < 4).sum() == 20 and (rows >= 4).sum() == 20
    global_top = score.reshape(-1).topk(40).indices.sort().values
    assert int((global_top // 10 < 4).sum()) == 40  # one global top-k would take the top tile only
    assert torch.equal(select_queries(score, query_tiles(8, 10, 0.5, tiles=1))[0], global_top)
    assert torch.equal(sel, sel.sort().values)  # raster order


@pytest.mark.parametrize("affinity", ["dot", "l2"])
@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2]])
def test_sparse_with_covering_windows_equals_dense(order: list[int], affinity: str) -> None:
    torch.manual_seed(0)
    c, h, w = 12, 6, 9
    stt = SparseTemporalTransformer(c, key_frames=3, window_start=9, window_end=9, query_ratio=1.0,
                                    attn_dim=8, heads=2, chunk=7, affinity=affinity).double().eval()
    feat = torch.randn(1, c, h, w, dtype=torch.float64)
    with torch.no_grad():
        memory = make_memory(stt.float(), 3, c, h, w).double()
        stt.double()
        sparse = stt(feat, memory, order)
        dense = dense_temporal_attention(stt, feat, memory, order)
    assert not torch.allclose(sparse, feat)  # attention changed the features
    torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("affinity", ["dot", "l2"])
@pytest.mark.parametrize("order", [[2, 0, 1], [1, 0]])
def test_sparse_windows_match_brute_force(order: list[int], affinity: str) -> None:
    """TR=1 with real windows equals an explicit per-query loop over each frame's padded window;
    ``dot``: q.k / sqrt(d) with the query projection, ``l2``: -|q - k|^2 / sqrt(d) with the key projection."""
    torch.manual_seed(3)
    c, h, w, t = 10, 7, 9, 3
    stt = SparseTemporalTransformer(c, key_frames=t, window_start=1, window_end=2, window_step=1,
                                    query_ratio=1.0, attn_dim=8, heads=2, affinity=affinity).double().eval()
    feat = torch.randn(1, c, h, w, dtype=torch.float64)
    memory = make_memory(stt.float(), t, c, h, w).double()
    stt.double()
    # order[0] is the nearest frame's slot; with 2 frames only the two nearest windows are used
    with torch.no_grad():
        got = stt(feat, memory, order)
        proj = stt.q_proj if affinity == "dot" else torch.nn.Conv2d(c, 8, 1).double()
        if affinity == "l2":  # the key half of the key/value projection
            proj.weight.copy_(stt.kv_proj.weight[:8])
            proj.bias.copy_(stt.kv_proj.bias[:8])
        q = proj(feat)[0].reshape(stt.heads, stt.head_dim, h * w)
        expected = feat.clone()
        for y in range(h):
            for x in range(w):
                heads_out = []
                for hh in range(stt.heads):
                    keys, vals = [], []
                    for k, slot in enumerate(order):
                        half = stt.half_widths[k]
                        for yy in range(y - half, y + half + 1):
                            for xx in range(x - half, x + half + 1):
                                if 0 <= yy < h and 0 <= xx < w:
                                    row = memory[0, slot, hh, yy * w + xx]
                                    keys.append(row[:stt.head_dim])
                                    vals.append(row[stt.head_dim:])
                    kk, vv = torch.stack(keys), torch.stack(vals)
                    qq = q[hh, :, y * w + x]
                    if affinity == "dot":
                        logits = kk @ qq / math.sqrt(stt.head_dim)
                    else:
                        logits = -((kk - qq) ** 2).sum(1) / math.sqrt(stt.head_dim)
                    heads_out.append(logits.softmax(0) @ vv)
                expected[0, :, y, x] += stt.out_proj(torch.cat(heads_out))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_unselected_positions_keep_their_features() -> None:
    torch.manual_seed(0)
    c, h, w = 16, 8, 12
    stt = SparseTemporalTransformer(c, key_frames=2, query_ratio=0.25, attn_dim=8).eval()
    feat = torch.randn(1, c, h, w)
    memory = make_memory(stt, 2, c, h, w)
    with torch.no_grad():
        out = stt(feat, memory, [0, 1])
        sel = stt.select(stt.queries(feat))[0]
    changed = (out - feat).abs().sum(1).reshape(-1) > 0
    assert set(changed.nonzero().flatten().tolist()) == set(sel.tolist())
    assert sel.numel() == round(0.25 * h * w)


@pytest.mark.parametrize("affinity", ["dot", "l2"])
def test_attention_weights_are_what_forward_applies(affinity: str) -> None:
    """``attention`` returns, for every position, the weights that ``forward`` (TR = 1) puts on the values."""
    torch.manual_seed(2)
    c, h, w = 12, 5, 7
    stt = SparseTemporalTransformer(c, key_frames=2, window_start=1, window_end=2, query_ratio=1.0, attn_dim=8,
                                    heads=2, affinity=affinity).double().eval()
    feat = torch.randn(1, c, h, w, dtype=torch.float64)
    memory = make_memory(stt.float(), 3, c, h, w).double()
    stt.double()
    weights, frame = stt.attention(feat, memory, [2, 0])
    pos, inside, _ = key_index_table(h, w, stt.half_widths)
    assert weights.shape == (1, 2, h * w, pos.shape[1]) and frame.tolist() == [0] * 9 + [1] * 25
    assert torch.equal(weights[0, :, ~inside], torch.zeros_like(weights[0, :, ~inside]))  # padding gets nothing
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 2, h * w, dtype=torch.float64))
    values = memory[0][torch.tensor([2, 0])[frame][None, :], :, pos.long(), stt.head_dim:]  # (HW, K, heads, hd)
    out = torch.einsum("hpk,pkhd->phd", weights[0], values).reshape(h * w, 8)
    with torch.no_grad():
        expected = feat + stt.out_proj(out).T.reshape(1, c, h, w)
        torch.testing.assert_close(stt(feat, memory, [2, 0]), expected, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="at least one past frame"):
        stt.attention(feat, memory, [])


def test_l2_affinity_finds_the_matching_position() -> None:
    """With ``l2`` a query's best key is the past position with its own features (whatever the learned
    projection), so a scene shifted by one cell is followed; the paper's dot product has no such bias."""
    torch.manual_seed(0)
    c, h, w = 16, 8, 10
    prev = torch.randn(1, c, h, w)
    feat = torch.roll(prev, shifts=(1, -1), dims=(2, 3))  # content moved down 1, left 1: came from (y-1, x+1)
    hits = {}
    for affinity in ("dot", "l2"):
        stt = SparseTemporalTransformer(c, key_frames=1, window_start=1, window_end=1, query_ratio=1.0, attn_dim=8,
                                        heads=2, affinity=affinity).eval()
        assert (stt.q_proj is None) == (affinity == "l2")
        weights, _ = stt.attention(feat, stt.project_memory(prev)[:, None], [0])
        inner = torch.zeros(h, w, dtype=torch.bool)
        inner[1:-1, 1:-1] = True  # every 3x3 window inside the map
        best = weights[0].argmax(-1)[:, inner.reshape(-1)]  # (heads, positions)
        hits[affinity] = (best == 0 * 3 + 2).float().mean().item()  # window offset (dy, dx) = (-1, +1)
    assert hits["l2"] == 1.0
    assert hits["dot"] < 0.5


def test_no_frames_or_zero_ratio_is_identity() -> None:
    stt = SparseTemporalTransformer(8, attn_dim=8).eval()
    feat = torch.randn(1, 8, 4, 6)
    memory = make_memory(stt, 7, 8, 4, 6)
    assert stt(feat, memory, []) is feat
    stt.query_ratio = 0.0
    assert stt(feat, memory, [0, 1]) is feat


def test_batch_items_use_their_own_memory_and_validity_flags() -> None:
    torch.manual_seed(0)
    c, h, w = 8, 6, 7
    stt = SparseTemporalTransformer(c, key_frames=3, attn_dim=8).eval()
    feat = torch.randn(2, c, h, w)
    memory = torch.cat([make_memory(stt, 3, c, h, w, seed=1), make_memory(stt, 3, c, h, w, seed=2)])
    flags = torch.tensor([[True, True, False], [True, False, False]])
    with torch.no_grad():
        torch.testing.assert_close(stt(feat, memory, [1, 0]),
                                   torch.cat([stt(feat[:1], memory[:1], [1, 0]), stt(feat[1:], memory[1:], [1, 0])]))
        torch.testing.assert_close(stt(feat, memory, [0, 1, 2], valid=flags),  # each item's own valid frames
                                   torch.cat([stt(feat[:1], memory[:1], [0, 1]), stt(feat[1:], memory[1:], [0])]))
        none = torch.tensor([[True, False, False], [False, False, False]])  # item 1: no valid frame at all
        got = stt(feat, memory, [0, 1, 2], valid=none)
        torch.testing.assert_close(got[1], feat[1], rtol=0, atol=0)  # keeps its features, no NaN
        torch.testing.assert_close(got[:1], stt(feat[:1], memory[:1], [0]))
    with pytest.raises(ValueError, match="one flag per frame"):
        stt(feat, memory, [0, 1, 2], valid=torch.ones(2, 2, dtype=torch.bool))


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SparseTemporalTransformer(8, attn_dim=10, heads=3)
    with pytest.raises(ValueError, match="odd"):
        SparseTemporalTransformer(8, query_radius=4)
    with pytest.raises(ValueError, match="query_ratio"):
        SparseTemporalTransformer(8, query_ratio=1.5)
    with pytest.raises(ValueError, match="affinity='cosine': choose one of dot, l2"):
        SparseTemporalTransformer(8, affinity="cosine")


def test_channels_last_layout_is_kept() -> None:
    """mkldnn convolutions hand over channels-last maps; the refined map must stay channels-last,
    or the head's convolution and the argmax over classes after it slow down several-fold."""
    stt = SparseTemporalTransformer(16, key_frames=2, attn_dim=8).eval()
    feat = torch.randn(1, 16, 8, 12).contiguous(memory_format=torch.channels_last)
    memory = make_memory(stt, 2, 16, 8, 12)
    with torch.no_grad():
        out = stt(feat, memory, [0, 1])
        ref = stt(feat.contiguous(), memory, [0, 1])
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref)


# ---------------------------------------------------------------------------- tiled attention
def with_method(stt: SparseTemporalTransformer, method: str, fn):
    """``fn()`` with ``stt.method`` switched to ``method`` (then switched back)."""
    before, stt.method = stt.method, method
    try:
        return fn()
    finally:
        stt.method = before


def test_tile_tables_cover_every_window_once() -> None:
    """A tile's block in frame k is its box grown by l_k; each query's window mask selects exactly its own
    (2 l + 1)^2 window positions from it, and outside-map positions are flagged (clamped only as an index)."""
    h, w, t, halves = 9, 14, 4, (1, 3)
    tab = tile_tables(h, w, halves, t)
    assert (tab.tiles_y, tab.tiles_x) == (3, 4) and tab.sizes == (36, 100)
    assert tab.slot.unique().numel() == h * w  # every position has its own query slot
    pos, inside, frame = window_keys(h, w, halves, torch.arange(h * w))
    for p in [0, 13, 4 * 14 + 6, h * w - 1, 8 * 14 + 2]:  # corners, interior, bottom edge of a partial tile
        tile, a = divmod(int(tab.slot[p]), t * t)
        attended = tab.window[a] & tab.inside[tile]
        for k in range(2):
            cols = tab.frame == k
            got = sorted(tab.pos[tile][cols & attended].tolist())
            assert got == sorted(pos[p][inside[p] & (frame == k)].tolist())


@pytest.mark.parametrize("affinity", ["dot", "l2"])
@pytest.mark.parametrize(("h", "w", "tile", "ratio"), [(9, 14, 4, 0.5), (7, 5, 3, 1.0), (11, 13, ATTN_TILE, 0.3),
                                                       (6, 10, 8, 0.5)])
def test_tiled_attention_equals_the_gather_reference(h: int, w: int, tile: int, ratio: float, affinity: str) -> None:
    """fp32, random inputs: tiles == one gathered window per query, for forward (batch 2, frame validity per
    item) and forward_frames (static export formulation), maps that are not a multiple of the tile."""
    torch.manual_seed(h * w + tile)
    c, t = 12, 4
    stt = SparseTemporalTransformer(c, key_frames=t, window_start=1, window_end=3, query_ratio=ratio, attn_dim=8,
                                    heads=2, affinity=affinity, tile=tile).eval()
    feat = torch.randn(2, c, h, w)
    memory = torch.cat([make_memory(stt, 5, c, h, w, seed=1), make_memory(stt, 5, c, h, w, seed=2)])
    order = [3, 1, 0, 4]
    flags = torch.tensor([[True, False, True, True], [False, True, True, False]])
    with torch.no_grad():
        for valid in (None, flags, torch.tensor([False, True, False, True])):
            got = stt(feat, memory, order, valid=valid)
            ref = with_method(stt, "gather", lambda v=valid: stt(feat, memory, order, valid=v))
            assert not torch.allclose(got, feat)
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        frames = [memory[:1, s] for s in order]
        for valid in (flags[0], torch.ones(t, dtype=torch.bool), torch.zeros(t, dtype=torch.bool)):
            ref = with_method(stt, "gather", lambda v=valid: stt(feat[:1], memory[:1], order, valid=v))
            old = with_method(stt, "gather", lambda v=valid: stt.forward_frames(feat[:1], frames, v, query_chunk=20))
            for layout in EXPORT_LAYOUTS:
                got = stt.forward_frames(feat[:1], frames, valid, query_chunk=20, layout=layout)
                torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(got, old, rtol=1e-5, atol=1e-5)


def full_ratio_inputs(seed: int, c: int, h: int, w: int, frames: int, **kwargs: object
                      ) -> tuple[SparseTemporalTransformer, torch.Tensor, torch.Tensor]:
    """An fp32 module with TR = 1 (every position a query, borders included), a feature map and memory."""
    torch.manual_seed(seed)
    stt = SparseTemporalTransformer(c, key_frames=frames, query_ratio=1.0, attn_dim=8, heads=2, **kwargs).eval()
    return stt, torch.randn(1, c, h, w), make_memory(stt, frames, c, h, w)


@pytest.mark.parametrize("affinity", ["dot", "l2"])
def test_tiled_attention_with_covering_windows_equals_dense_in_fp32(affinity: str) -> None:
    stt, feat, memory = full_ratio_inputs(5, 12, 7, 10, 3, window_start=10, window_end=10, affinity=affinity)
    with torch.no_grad():
        dense = dense_temporal_attention(stt, feat, memory, [2, 0, 1])
        torch.testing.assert_close(stt(feat, memory, [2, 0, 1]), dense, rtol=1e-5, atol=1e-5)
        frames = [memory[:, s] for s in (2, 0, 1)]
        for layout in EXPORT_LAYOUTS:
            torch.testing.assert_close(stt.forward_frames(feat, frames, torch.ones(3, dtype=torch.bool), layout=layout),
                                       dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["tiles", "gather"])
def test_keys_outside_a_querys_window_never_contribute(method: str) -> None:
    """Changing the memory anywhere outside a query's own window (the clamped border positions a tile's
    block reads in place of padding included) leaves that query's output bit-identical."""
    h, w = 9, 11
    stt, feat, memory = full_ratio_inputs(7, 10, h, w, 2, window_start=1, window_end=2, method=method)
    with torch.no_grad():
        base = stt(feat, memory, [0, 1])
        ones = torch.ones(2, dtype=torch.bool)
        base_static = {lay: stt.forward_frames(feat, [memory[:, 0], memory[:, 1]], ones, layout=lay)
                       for lay in EXPORT_LAYOUTS}
        for y, x in [(0, 0), (0, 5), (8, 10), (4, 0), (2, 2), (8, 4)]:  # corners, edges, inner, partial tiles
            changed = memory.clone()
            for k, half in enumerate(stt.half_widths):
                ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
                outside = ((ys - y).abs() > half) | ((xs - x).abs() > half)
                noise = 1e3 * torch.randn(stt.heads, h * w, 2 * stt.head_dim)
                changed[0, k] = torch.where(outside.reshape(1, -1, 1), noise, memory[0, k])
            got = stt(feat, changed, [0, 1])
            assert torch.equal(got[0, :, y, x], base[0, :, y, x]), (y, x)
            for lay in EXPORT_LAYOUTS:
                static = stt.forward_frames(feat, [changed[:, 0], changed[:, 1]], ones, layout=lay)
                assert torch.equal(static[0, :, y, x], base_static[lay][0, :, y, x]), (y, x, lay)
            assert not torch.equal(got, base)  # the change reached other queries


def test_method_and_tile_are_checked() -> None:
    with pytest.raises(ValueError, match="layout='fast': choose one of portable, openvino"):
        SparseTemporalTransformer(8, attn_dim=8, key_frames=1).forward_frames(
            torch.zeros(1, 8, 4, 4), [torch.zeros(1, 2, 16, 8)], torch.ones(1, dtype=torch.bool), layout="fast")
    with pytest.raises(ValueError, match="method='dense': choose one of tiles, gather"):
        SparseTemporalTransformer(8, attn_dim=8, method="dense")
    with pytest.raises(ValueError, match="tile=0"):
        SparseTemporalTransformer(8, attn_dim=8, tile=0)
