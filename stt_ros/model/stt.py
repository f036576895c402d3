"""Sparse Temporal Transformer (STT, Li et al., ACM MM 2021).

Queries come from the current frame's 1/8 feature map, keys and values from the T previous
frames ("memory"). Two selections make it sparse:

* Query selection scores every position by its Neighbouring Similarity Matrix (NSM) over an
  r x r neighbourhood (itself excluded; neighbours outside the map do not count):
  ``p_sim = softmax_i(q_i . q)``, ``D_KL = KL(uniform || p_sim) = sum_i u_i log(u_i / p_sim_i)``,
  ``D_cos = mean_i(1 - cos(q_i, q))``, ``score = D_KL + D_cos``. The TR fraction of positions with
  the highest score are refined; the others keep their features.
* Key selection: the k-th nearest previous frame (k = 1 the most recent, i.e. t = T - k + 1)
  contributes a window of half-width ``l_t = min(s + (T - t) * eps, e)`` centred on the query's
  position. Windows are **padded** at the borders: positions outside the map are masked out of
  the softmax (never clamped or duplicated), so a query near the border attends to fewer keys.

Top-k and TensorRT: TensorRT's TopK accepts K <= 3840. Selection therefore runs per query tile, a
horizontal band of rows (config ``query_tiles``), each tile keeping ``round(TR * tile_positions)``
positions, with as few tiles as keep every K <= 3840 (at 1024x2048 input, a 128x256 map: 5 tiles of
25-26 rows). This differs from one global top-k in that every tile gets exactly its share: a tile
with many boundaries cannot take slots from a flat one. With a single tile (K <= 3840 overall) it is
the global top-k.

Affinity: ``"dot"`` is the paper's scaled dot product between separately projected queries and
keys. ``"l2"`` projects the query with the key projection (one projection for current and past
frames) and scores a key by the negative squared distance ``-|q - k|^2 / sqrt(d)``, as STCN (Cheng
et al., NeurIPS 2021) does for memory reading: a position's best key is the past position whose
features match it, which the dot product of two unrelated projections does not prefer. ``|q|^2``
is the same for every key of a query, so the logits are ``(2 q.k - |k|^2) / sqrt(d)``; the
memory layout is unchanged, and the NSM query selection scores the shared-projection queries.

Memory layout: the keys and values of one frame are computed once (:meth:`project_memory`) as
``(B, heads, H*W, 2 * head_dim)`` (key then value per position), which is what the runtime's ring
buffer stores. ``forward`` takes a memory tensor ``(B, S, heads, H*W, 2 * head_dim)`` and the slot
indices of the frames to use, nearest first; fewer than T frames (while the buffer fills) use
the windows of the nearest ones.

Frame validity: ``forward(..., valid=...)`` masks whole frames out of the attention (their keys
get -inf); a query left with no valid key keeps its feature. Masking the farthest frames is the
same as passing fewer of them, which is how a static-shape graph handles a filling buffer.

Computation (``method="tiles"``, the default): the map is cut into square query tiles of side
``tile`` (:data:`ATTN_TILE`); a tile attends, in frame k, to the union of its queries' windows
(its box grown by l_k: ``(tile + 2 l_k)^2`` keys), as one batched matmul over the tiles, with a
per-(query, key) mask "key inside this query's own window and inside the map". The attention is
the same per query as with one gathered window per query; the key blocks come from one gather of
a small static table (:func:`tile_tables`), so the work is a few large matmuls and one softmax
instead of a gathered copy of every query's keys. ``forward`` computes the tiles that hold a
selected query (about 3/4 of the 4x4 tiles at TR = 0.5), the static export formulation every tile;
the result is merged at the selected positions only.
``method="gather"`` keeps the previous formulation (one gathered window per selected query), the
reference the tests and benchmarks compare against.

Export formulation (:meth:`SparseTemporalTransformer.forward_frames`): the same computation with
static shapes and no data-dependent Python control flow, for ONNX/TensorRT. It takes the T
buffered frames as separate tensors (nearest first) plus a per-frame validity vector,
concatenates them once, gathers each chunk of tiles' key blocks with one Gather of a static
table, masks with additive 0 / -inf biases (MatMul, Add, Softmax, MatMul: the pattern OpenVINO fuses
into one kernel), and merges the result as a map: the output projection as a 1x1 convolution over
the attention map times a 0/1 map of the selected positions (one ScatterND without reduction: the
positions are distinct), which stays in the convolutions' layout. Per tile top-k uses sorted output
and the final raster-order sort is skipped (queries are independent, so their order does not change
any value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: TensorRT's TopK limit (K <= 3840).
TOPK_LIMIT = 3840
#: Queries per chunk of the tiled attention (bounds the gathered key blocks and logits held at once).
TILE_CHUNK_QUERIES = 128


def key_half_widths(key_frames: int, start: int, end: int, step: int) -> list[int]:
    """Half-widths nearest first: element k-1 is l_t for t = T - k + 1, l_t = min(s + (T-t)*eps, e)."""
    return [min(start + (k - 1) * step, end) for k in range(1, key_frames + 1)]


def key_window_offsets(half_widths: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets (dy, dx) and frame index k (0 = nearest) of every key a query attends to.

    One entry per key: frame k contributes its (2 l_k + 1)^2 window. ``len`` of the result is the
    paper's "key size" per query.
    """
    dys, dxs, ks = [], [], []
    for k, half in enumerate(half_widths):
        r = torch.arange(-half, half + 1)
        dy, dx = torch.meshgrid(r, r, indexing="ij")
        dys.append(dy.reshape(-1))
        dxs.append(dx.reshape(-1))
        ks.append(torch.full((dy.numel(),), k))
    return torch.cat(dys), torch.cat(dxs), torch.cat(ks)


def key_size(half_widths: Sequence[int]) -> int:
    """Number of keys per query for a window schedule."""
    return int(key_window_offsets(half_widths)[0].numel())


def window_keys(height: int, width: int, half_widths: Sequence[int],
                positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Keys of the queries at flat ``positions`` (N,) of a (height, width) map.

    Returns ``pos (N, K) int64`` (flat key position, clamped into the map so it is always a valid
    index), ``inside (N, K) bool`` (False for window positions outside the map: padding, masked
    out of the attention) and ``frame (K,) int64`` (the key's frame, 0 = nearest).
    """
    dy, dx, frame = key_window_offsets(half_widths)
    ys, xs = (positions // width)[:, None], (positions % width)[:, None]
    ky, kx = ys + dy[None], xs + dx[None]
    inside = (ky >= 0) & (ky < height) & (kx >= 0) & (kx < width)
    pos = ky.clamp(0, height - 1) * width + kx.clamp(0, width - 1)
    return pos, inside, frame


@lru_cache(maxsize=8)
def key_index_table(height: int, width: int, half_widths: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`window_keys` for every position of the map, cached per map size and schedule.

    Positions are stored as int32 (half the memory traffic of int64). Key columns are ordered
    nearest frame first, so the table for the nearest n frames is a column prefix of this one.
    """
    pos, inside, frame = window_keys(height, width, half_widths, torch.arange(height * width))
    return pos.to(torch.int32), inside, frame


#: Side of the attention's square query tiles (positions of the 1/8 map), chosen by measurement
#: (bench/bench_sparse_vs_dense.py --method): smaller tiles waste fewer query-key pairs, larger ones
#: give the matrix units bigger products; 4 was fastest on torch fp32 and onnxruntime at 64x128.
ATTN_TILE = 4


class ExportLayout(NamedTuple):
    """How :meth:`SparseTemporalTransformer.forward_frames` lays the tiled attention out in an exported
    graph: the same values, in the order of operations an engine runs fastest (measured with
    bench/bench_engines.py; see docs/DEPLOY.md)."""

    tile: int  #: side of the query tiles
    #: True: one Gather of whole key|value rows per chunk of tiles, the queries zero-padded to the row
    #: so the score product reads the keys in place and the second half of the value product is the
    #: result (no slices of the gathered blocks: 2x the multiply-adds, which OpenVINO's fused attention
    #: kernel absorbs), and the window and map masks added one after the other (both fused there).
    #: False: keys and values gathered apart, one combined mask (onnxruntime's fastest).
    joint_kv: bool


#: The layouts ``stt-export --layout`` offers. ``portable``: what onnxruntime and TensorRT get;
#: ``openvino``: what the OpenVINO backend exports a checkpoint with (2-core Xeon with AMX, OpenVINO
#: 2026.4 bf16 at 512x1024: STT-BiSe18 step 101 -> 85 ms; onnxruntime runs it 14 % slower).
EXPORT_LAYOUTS = {"portable": ExportLayout(ATTN_TILE, False), "openvino": ExportLayout(8, True)}


class TileTables(NamedTuple):
    """Static tables of the tiled attention for one map size, window schedule and tile side ``t``.

    Tile ``i`` (raster order over the ``tiles_y x tiles_x`` grid) holds the queries of a t x t square;
    for frame k its keys are the block of side ``t + 2 l_k`` around it (the union of its queries'
    windows), columns ordered frame by frame, nearest first (the nearest n frames: a column prefix).
    """

    tiles_y: int
    tiles_x: int
    pos: Tensor  #: (n_tiles, K) int64: key position in the map, clamped into it (a valid index; masked if outside)
    frame: Tensor  #: (K,) int64: the key's frame, 0 = nearest
    inside: Tensor  #: (n_tiles, K) bool: key inside the map
    window: Tensor  #: (t*t, K) bool: key inside the window of the tile's query (a, b) (row a*t + b)
    sizes: tuple[int, ...]  #: keys per frame, (t + 2 l_k)^2
    slot: Tensor  #: (H*W,) int64: the query slot (tile * t*t + a*t + b) of every map position

    def keys(self, n_frames: int) -> int:
        """Number of key columns of the nearest ``n_frames`` frames."""
        return sum(self.sizes[:n_frames])


@lru_cache(maxsize=16)
def tile_tables(height: int, width: int, half_widths: tuple[int, ...], tile: int) -> TileTables:
    """The :class:`TileTables` of a (height, width) map, cached per size, schedule and tile side."""
    t = tile
    ny, nx = -(-height // t), -(-width // t)
    ty, tx = (g.reshape(-1, 1) for g in torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij"))
    a = torch.arange(t)
    qy, qx = (g.reshape(-1, 1) for g in torch.meshgrid(a, a, indexing="ij"))  # (t*t, 1)
    pos, inside, window, frame = [], [], [], []
    for k, half in enumerate(half_widths):
        r = torch.arange(t + 2 * half)
        cy, cx = (g.reshape(1, -1) for g in torch.meshgrid(r, r, indexing="ij"))  # (1, b*b)
        ky, kx = ty * t - half + cy, tx * t - half + cx  # (n_tiles, b*b)
        inside.append((ky >= 0) & (ky < height) & (kx >= 0) & (kx < width))
        pos.append(ky.clamp(0, height - 1) * width + kx.clamp(0, width - 1))
        # query (a, b) at tile origin + (a, b), key at origin - l + (cy, cx): |dy|, |dx| <= l
        window.append((cy >= qy) & (cy <= qy + 2 * half) & (cx >= qx) & (cx <= qx + 2 * half))
        frame.append(torch.full((cy.numel(),), k))
    ys, xs = torch.arange(height)[:, None], torch.arange(width)[None, :]
    slot = (((ys // t) * nx + xs // t) * (t * t) + (ys % t) * t + xs % t).reshape(-1)
    return TileTables(ny, nx, torch.cat(pos, 1), torch.cat(frame), torch.cat(inside, 1), torch.cat(window, 1),
                      tuple((t + 2 * half) ** 2 for half in half_widths), slot)


@lru_cache(maxsize=16)
def tile_blocked(height: int, width: int, half_widths: tuple[int, ...], tile: int) -> Tensor:
    """(n_tiles, t*t, K) bool: True where a key is NOT attended (outside the query's window or the map)."""
    tab = tile_tables(height, width, half_widths, tile)
    return ~(tab.window[None] & tab.inside[:, None])


def tile_flops(height: int, width: int, half_widths: Sequence[int], tile: int, attn_dim: int) -> int:
    """FLOPs of the tiled attention's two products (scores and values) over every tile of the map."""
    tab = tile_tables(height, width, tuple(half_widths), tile)
    return 2 * 2 * tab.tiles_y * tab.tiles_x * tile * tile * tab.keys(len(half_widths)) * attn_dim


def query_tiles(height: int, width: int, ratio: float, tiles: int = 0,
                limit: int = TOPK_LIMIT) -> list[tuple[int, int, int]]:
    """Query tiles (horizontal bands of rows): ``[(row_start, row_end, k), ...]`` with every k <= limit.

    ``tiles=0`` picks the fewest tiles that satisfy the limit; rows are split as evenly as possible.
    """
    if ratio <= 0:
        return []
    if tiles <= 0:
        tiles = 1
        while tiles < height and round(ratio * math.ceil(height / tiles) * width) > limit:
            tiles += 1
    tiles = min(tiles, height)
    edges = [round(i * height / tiles) for i in range(tiles + 1)]
    out = []
    for r0, r1 in zip(edges[:-1], edges[1:], strict=True):
        k = min(max(round(ratio * (r1 - r0) * width), 1), (r1 - r0) * width)
        if k > limit:
            raise ValueError(f"query selection needs top-k of {k} > {limit} in rows {r0}..{r1} of a "
                             f"{height}x{width} map; use more query_tiles or a smaller query_ratio")
        out.append((r0, r1, k))
    return out


def nsm_score(q: Tensor, radius: int) -> Tensor:
    """NSM query-selection score ``D_KL + D_cos`` for every position.

    ``q``: (B, C, H, W) query features; ``radius``: side r of the r x r neighbourhood (odd).
    Neighbours outside the map are excluded (a border position has fewer neighbours).
    Returns (B, H, W).
    """
    b, c, h, w = q.shape
    p = radius // 2
    norm = q.norm(dim=1).clamp_min(1e-6)  # (B, H, W)
    q_pad = F.pad(q, (p, p, p, p))
    norm_pad = F.pad(norm, (p, p, p, p), value=1.0)
    inside = F.pad(q.new_ones(1, h, w), (p, p, p, p))
    dots, nbr_norms, valid = [], [], []
    first: dict[tuple[int, int], Tensor] = {}  # the dot maps of the offsets before the centre
    ones = q.new_ones(1, c, 1, 1)
    for dy in range(radius):
        for dx in range(radius):
            if dy == p and dx == p:
                continue
            if (dy, dx) < (p, p):
                # the channel sum as a 1x1 convolution: engines run it far faster than a ReduceSum over
                # the channel axis of an NCHW map (onnxruntime: 5x)
                dot = first[dy, dx] = F.conv2d(q * q_pad[:, :, dy:dy + h, dx:dx + w], ones)[:, 0]
            else:
                # symmetry: q(y, x).q(y + o) is the mirrored offset's dot at y + o (the same products; equal
                # up to summation order), a shifted one-channel map instead of a C-channel product
                mirrored = F.pad(first[2 * p - dy, 2 * p - dx], (p, p, p, p))
                dot = mirrored[:, dy:dy + h, dx:dx + w]
            dots.append(dot)
            nbr_norms.append(norm_pad[:, dy:dy + h, dx:dx + w])
            valid.append(inside[:, dy:dy + h, dx:dx + w])
    dot = torch.stack(dots, 1)  # (B, n, H, W)
    cos = dot / (torch.stack(nbr_norms, 1) * norm[:, None])
    ok = torch.stack(valid, 1) > 0  # (1, n, H, W)
    n = ok.sum(1).to(q.dtype)  # neighbours per position
    lse = dot.masked_fill(~ok, float("-inf")).logsumexp(1)
    mean_dot = (dot * ok).sum(1) / n
    d_kl = lse - mean_dot - torch.log(n)  # sum_i u log(u / p_i) with u = 1/n
    d_cos = ((1 - cos) * ok).sum(1) / n
    return d_kl + d_cos


def select_queries(score: Tensor, tiles: Sequence[tuple[int, int, int]]) -> Tensor:
    """Flat positions (B, N) of the selected queries, sorted ascending (raster order)."""
    b, h, w = score.shape
    flat = score.reshape(b, h * w)
    picks = [flat[:, r0 * w:r1 * w].topk(k, dim=1, sorted=False).indices + r0 * w for r0, r1, k in tiles]
    return torch.cat(picks, 1).sort(dim=1).values


class SparseTemporalTransformer(nn.Module):
    """The STT module: refines a (B, C, H, W) feature map with attention into past frames.

    Parameters mirror :class:`stt_ros.config.STTConfig` (``key_frames`` T, window schedule
    s/e/eps, ``query_radius`` r, ``query_ratio`` TR, ``attn_dim``, ``heads``, ``query_tiles``,
    ``affinity``). With ``affinity="l2"`` there is no separate query projection.
    """

    AFFINITIES = ("dot", "l2")
    #: ``"tiles"``: the tiled dense-block attention (default); ``"gather"``: one gathered window per query,
    #: the previous formulation, kept as the reference the tests and benchmarks compare against.
    METHODS = ("tiles", "gather")

    def __init__(self, channels: int, key_frames: int = 7, window_start: int = 1, window_end: int = 5,
                 window_step: int = 1, query_radius: int = 5, query_ratio: float = 0.5, attn_dim: int = 32,
                 heads: int = 2, query_tiles: int = 0, chunk: int = 32, affinity: str = "dot",
                 method: str = "tiles", tile: int = ATTN_TILE) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim={attn_dim} is not divisible by heads={heads}")
        if query_radius < 3 or query_radius % 2 == 0:
            raise ValueError(f"query_radius={query_radius} must be odd and >= 3")
        if not 0.0 <= query_ratio <= 1.0:
            raise ValueError(f"query_ratio={query_ratio} must lie in [0, 1]")
        if affinity not in self.AFFINITIES:
            raise ValueError(f"affinity={affinity!r}: choose one of {', '.join(self.AFFINITIES)}")
        if method not in self.METHODS:
            raise ValueError(f"method={method!r}: choose one of {', '.join(self.METHODS)}")
        if tile < 1:
            raise ValueError(f"tile={tile} must be >= 1")
        self.channels = channels
        self.key_frames = key_frames
        self.half_widths = tuple(key_half_widths(key_frames, window_start, window_end, window_step))
        self.query_radius = query_radius
        self.query_ratio = float(query_ratio)
        self.query_tiles = query_tiles
        self.heads = heads
        self.head_dim = attn_dim // heads
        self.chunk = chunk
        self.affinity = affinity
        self.attn_dim = attn_dim
        self.method = method
        self.tile = tile
        self.q_proj = nn.Conv2d(channels, attn_dim, 1) if affinity == "dot" else None
        self.kv_proj = nn.Conv2d(channels, 2 * attn_dim, 1)
        self.out_proj = nn.Linear(attn_dim, channels)

    # ------------------------------------------------------------------ projections
    def queries(self, feat: Tensor) -> Tensor:
        """Query features (B, attn_dim, H, W): the query projection, or for ``l2`` the key projection."""
        if self.q_proj is not None:
            return self.q_proj(feat)
        return F.conv2d(feat, self.kv_proj.weight[:self.attn_dim], self.kv_proj.bias[:self.attn_dim])

    def _query_scale(self) -> float:
        """Factor on q so that ``q.k`` plus :meth:`_key_term` gives the logits."""
        return self.head_dim ** -0.5 * (2.0 if self.affinity == "l2" else 1.0)

    def _key_term(self, keys: Tensor) -> Tensor | None:
        """Per-key logit term ``-|k|^2 / sqrt(d)`` of the l2 affinity for keys (..., K, hd): (..., 1, K)."""
        if self.affinity != "l2":
            return None
        return (keys.square().sum(-1) * -self.head_dim ** -0.5).unsqueeze(-2)

    # ------------------------------------------------------------------ memory
    def project_memory(self, feat: Tensor) -> Tensor:
        """Keys and values of one frame, computed once: (B, heads, H*W, 2*head_dim)."""
        b, _, h, w = feat.shape
        kv = self.kv_proj(feat).view(b, 2, self.heads, self.head_dim, h * w)
        return kv.permute(0, 2, 4, 1, 3).reshape(b, self.heads, h * w, 2 * self.head_dim)

    def memory_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of one frame's memory for a (height, width) feature map, batch dimension excluded."""
        return self.heads, height * width, 2 * self.head_dim

    # ------------------------------------------------------------------ selection
    def select(self, q: Tensor) -> Tensor:
        """Selected query positions (B, N) for query features (B, d, H, W)."""
        b, _, h, w = q.shape
        if self.query_ratio >= 1.0:
            return torch.arange(h * w, device=q.device).expand(b, h * w)
        tiles = query_tiles(h, w, self.query_ratio, self.query_tiles)
        return select_queries(nsm_score(q, self.query_radius), tiles)

    # ------------------------------------------------------------------ forward
    def forward(self, feat: Tensor, memory: Tensor, order: Sequence[int], valid: Tensor | Sequence[bool] | None = None
                ) -> Tensor:
        """Refine ``feat`` (B, C, H, W) with attention into ``memory`` (B, S, heads, H*W, 2*head_dim).

        ``order``: slot indices into memory's S axis of the past frames to use, nearest first
        (at most T; empty returns ``feat`` unchanged). Frame k of ``order`` gets the k-th window.
        ``valid``: optional per-frame validity, (len(order),) or (B, len(order)) bool: keys of an
        invalid frame are masked out (-inf); a query with no valid key keeps its feature.
        """
        n_frames = min(len(order), self.key_frames)
        if n_frames == 0 or self.query_ratio <= 0.0:
            return feat
        if valid is not None:
            valid = torch.as_tensor(valid, dtype=torch.bool, device=feat.device)
            if valid.dim() == 1:
                valid = valid.expand(feat.shape[0], -1)
            if valid.shape[0] != feat.shape[0] or valid.shape[1] < n_frames:
                raise ValueError(f"valid has shape {tuple(valid.shape)}; expected ({len(order)},) or "
                                 f"({feat.shape[0]}, {len(order)}) (one flag per frame of order)")
            valid = valid[:, :n_frames]
            if not bool(valid.any()):
                return feat
        if self.method == "gather":
            return self._forward_gather(feat, memory, order, valid, n_frames)
        return self._forward_tiles(feat, memory, order, valid, n_frames)

    def _tile_queries(self, q: Tensor, tile: int | None = None) -> Tensor:
        """Scaled queries (B, d, H, W) in tiles of side ``tile`` (default: the module's):
        (B, heads, n_tiles, t*t, head_dim), the map zero-padded to whole tiles (padding slots are computed
        and never read)."""
        b, _, h, w = (int(x) for x in q.shape)
        t = tile or self.tile
        ny, nx = -(-h // t), -(-w // t)
        # through channels-last (B, H, W, d): the layout the convolution leaves q in, so no reorder
        q = F.pad(q * self._query_scale(), (0, nx * t - w, 0, ny * t - h)).permute(0, 2, 3, 1)
        q = q.reshape(b, ny, t, nx, t, self.heads, self.head_dim).permute(0, 5, 1, 3, 2, 4, 6)
        return q.reshape(b, self.heads, ny * nx, t * t, self.head_dim)

    def _forward_tiles(self, feat: Tensor, memory: Tensor, order: Sequence[int], valid: Tensor | None,
                       n_frames: int) -> Tensor:
        """``forward`` as dense products per query tile: each t x t tile of the map attends to the union
        of its queries' windows in each frame (its box grown by l_k), as one batched matmul over the tiles,
        with a per-(query, key) mask "inside this query's own window and inside the map". Only the tiles
        that hold a selected query are computed (the export formulation computes every tile: static
        shapes); the refined rows are merged at the selected positions only."""
        b, c, h, w = feat.shape
        hw, hd, heads = h * w, self.head_dim, self.heads
        q = self.queries(feat)
        sel = self.select(q)  # (B, N)
        n_sel = sel.shape[1]
        tab = tile_tables(h, w, self.half_widths, self.tile)
        dev = feat.device
        n_keys = tab.keys(n_frames)
        n_tiles, tt = tab.tiles_y * tab.tiles_x, self.tile * self.tile
        qt = self._tile_queries(q)  # (B, heads, n_tiles, tt, hd)
        s = memory.shape[1]
        slots = torch.as_tensor(list(order[:n_frames]), device=dev)
        frame = tab.frame[:n_keys].to(dev)
        # row of memory.view(B, S*heads*HW, 2hd) of key (head, tile, column)
        base = (slots[frame] * (heads * hw))[None, :] + tab.pos[:, :n_keys].to(dev)  # (n_tiles, K)
        idx = base[None] + (torch.arange(heads, device=dev) * hw)[:, None, None]  # (heads, n_tiles, K)
        mem = memory.reshape(b, s * heads * hw, 2 * hd)
        blocked = tile_blocked(h, w, self.half_widths, self.tile)[..., :n_keys].to(dev)  # (n_tiles, tt, K)
        invalid = None if valid is None else (~valid[:, frame])[:, None, None, None, :]  # (B, 1, 1, 1, K)
        key_term = None
        if self.affinity == "l2":  # -|k|^2 / sqrt(d) per memory row, gathered like the keys
            norms = memory[..., :hd].square().sum(-1).mul_(-hd ** -0.5).reshape(b, s * heads * hw)
        # only the tiles that hold a selected query of some batch item (the others' slots are never read)
        slot = tab.slot.to(dev)
        active = torch.unique(slot[sel] // tt)  # sorted tile ids
        out = qt.new_empty(b, heads, n_tiles, tt, hd)
        step = max(1, TILE_CHUNK_QUERIES // tt)
        for i in range(0, int(active.numel()), step):
            ids = active[i:i + step]
            m = int(ids.numel())
            rows = idx.index_select(1, ids).reshape(-1)
            kv = mem.index_select(1, rows).view(b, heads, m, n_keys, 2 * hd)
            logits = torch.matmul(qt.index_select(2, ids), kv[..., :hd].transpose(-1, -2))  # (B, heads, m, tt, K)
            if self.affinity == "l2":
                key_term = norms.index_select(1, rows).view(b, heads, m, 1, n_keys)
                logits += key_term
            mask = blocked.index_select(0, ids)
            logits.masked_fill_(mask if invalid is None else mask | invalid, float("-inf"))
            out.index_copy_(2, ids, torch.matmul(logits.softmax(-1), kv[..., hd:]))
        # the selected positions' rows: query slot of each, per batch item
        n_slots = n_tiles * tt
        rows_out = out.permute(0, 2, 3, 1, 4).reshape(b * n_slots, heads * hd)
        slot_sel = (slot[sel] + torch.arange(b, device=dev)[:, None] * n_slots).reshape(-1)
        upd = self.out_proj(rows_out.index_select(0, slot_sel))  # (B*N, C)
        if valid is not None:  # a batch item without any valid frame keeps its features (softmax gave NaN)
            upd = torch.where(valid.any(1).repeat_interleave(n_sel)[:, None], upd, upd.new_zeros(()))
        flat_sel = (sel + torch.arange(b, device=dev)[:, None] * hw).reshape(-1)
        merged = feat.permute(0, 2, 3, 1).reshape(b * hw, c).index_add(0, flat_sel, upd)
        return merged.view(b, h, w, c).permute(0, 3, 1, 2)

    def _forward_gather(self, feat: Tensor, memory: Tensor, order: Sequence[int], valid: Tensor | None,
                        n_frames: int) -> Tensor:
        """``forward`` with one gathered window per selected query (the previous formulation; reference)."""
        b, c, h, w = feat.shape
        hw = h * w
        q = self.queries(feat)
        sel = self.select(q)  # (B, N)
        n_sel = sel.shape[1]
        # rows of (B*H*W, .) views; free for channels-last maps (what mkldnn convolutions return)
        flat_sel = (sel + torch.arange(b, device=sel.device)[:, None] * hw).reshape(-1)  # (B*N,)
        q_sel = q.permute(0, 2, 3, 1).reshape(b * hw, -1).index_select(0, flat_sel) * self._query_scale()

        pos, inside, frame = key_index_table(h, w, self.half_widths)
        n_keys = key_size(self.half_widths[:n_frames])  # the nearest n frames: a column prefix
        pos, inside, frame = pos[:, :n_keys], inside[:, :n_keys], frame[:n_keys].to(feat.device)
        s = memory.shape[1]
        slots = torch.as_tensor(list(order[:n_frames]), device=feat.device)
        # row of memory.view(-1, 2*hd) for (batch, slot, head, position) = pos + col_off + batch_off
        head_off = torch.arange(self.heads, device=feat.device) * hw
        col_off = ((slots[frame] * self.heads * hw)[None, :] + head_off[:, None]).to(torch.int32)  # (heads, K)
        selp = sel.reshape(-1).to(pos.device)
        pos_sel = pos.index_select(0, selp).to(feat.device)  # (B*N, K)
        pos_sel += (torch.arange(b, device=feat.device, dtype=torch.int32) * (s * self.heads * hw)
                    ).repeat_interleave(n_sel)[:, None]
        outside = ~inside.index_select(0, selp).to(feat.device)[:, None, None, :]  # (B*N, 1, 1, K)
        keep = None
        if valid is not None:  # mask the keys of invalid frames; rows left without a key keep their feature
            outside = outside | (~valid[:, frame]).repeat_interleave(n_sel, 0)[:, None, None, :]
            keep = ~outside.view(b * n_sel, -1).all(1, keepdim=True)  # (B*N, 1)
        mem = memory.reshape(-1, 2 * self.head_dim)

        qf = q_sel.view(b * n_sel, self.heads, 1, self.head_dim)
        out = q_sel.new_empty(b * n_sel, self.heads, self.head_dim)
        hd = self.head_dim
        for i in range(0, b * n_sel, self.chunk):
            rows = pos_sel[i:i + self.chunk, None, :] + col_off  # (m, heads, K)
            m = rows.shape[0]
            kv = mem.index_select(0, rows.view(-1)).view(m, self.heads, -1, 2 * hd)
            logits = torch.matmul(qf[i:i + m], kv[..., :hd].transpose(-1, -2))  # (m, heads, 1, K)
            key_term = self._key_term(kv[..., :hd])
            if key_term is not None:
                logits = logits + key_term
            attn = logits.masked_fill_(outside[i:i + m], float("-inf")).softmax(-1)
            out[i:i + m] = torch.matmul(attn, kv[..., hd:]).squeeze(2)
        upd = self.out_proj(out.view(b * n_sel, self.heads * self.head_dim))  # (B*N, C)
        if keep is not None:
            upd = torch.where(keep, upd, upd.new_zeros(()))  # fully masked rows: softmax gave NaN
        # residual merge at the selected positions; the result keeps channels-last layout, which
        # the head's convolution and the channel argmax after it need to stay fast
        merged = feat.permute(0, 2, 3, 1).reshape(b * hw, c).index_add(0, flat_sel, upd)
        return merged.view(b, h, w, c).permute(0, 3, 1, 2)

    def attention(self, feat: Tensor, memory: Tensor, order: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Attention weights of **every** position (as if TR = 1) over its keys, for inspection.

        Returns ``weights (B, heads, H*W, K)`` (keys outside the map get 0) and ``frame (K,)``, the
        key's frame (0 = nearest), keys in :func:`key_window_offsets` order for the nearest
        ``min(len(order), T)`` frames. ``forward`` with TR = 1 adds ``out_proj`` of these weights times
        the values to every position. No gradients; memory-hungry for large maps (H*W*K per head).
        """
        n_frames = min(len(order), self.key_frames)
        if n_frames == 0:
            raise ValueError("attention needs at least one past frame in order")
        b, _, h, w = feat.shape
        hw, hd = h * w, self.head_dim
        n_keys = key_size(self.half_widths[:n_frames])
        pos, inside, frame = key_index_table(h, w, self.half_widths)
        pos, inside, frame = pos[:, :n_keys].long(), inside[:, :n_keys], frame[:n_keys]
        with torch.no_grad():
            q = self.queries(feat).view(b, self.heads, hd, hw).transpose(2, 3) * self._query_scale()
            slots = torch.as_tensor(list(order[:n_frames]), device=feat.device)[frame.to(feat.device)]  # (K,)
            keys = memory[:, slots[None, :], :, pos.to(feat.device), :hd]  # (HW, K, B, heads, hd)
            keys = keys.permute(2, 3, 0, 1, 4)  # (B, heads, HW, K, hd)
            logits = (keys @ q[..., None]).squeeze(-1)  # (B, heads, HW, K)
            key_term = self._key_term(keys)
            if key_term is not None:
                logits = logits + key_term.squeeze(-2)
            weights = logits.masked_fill(~inside.to(feat.device), float("-inf")).softmax(-1)
        return weights, frame

    # ------------------------------------------------------------------ export formulation
    def select_static(self, q: Tensor) -> Tensor:
        """Selected positions (N,) int32 of a batch-1 query map (1, d, H, W), for export.

        The same sets as :meth:`select` (per-tile top-k of the NSM score), in tile order and score
        order within a tile instead of raster order; every top-k has a constant K <= 3840.
        """
        h, w = int(q.shape[2]), int(q.shape[3])  # static: plain ints even while tracing
        if self.query_ratio >= 1.0:
            return torch.arange(h * w, dtype=torch.int32, device=q.device)
        tiles = query_tiles(h, w, self.query_ratio, self.query_tiles)
        flat = nsm_score(q, self.query_radius).reshape(h * w)
        picks = [flat[r0 * w:r1 * w].topk(k).indices + r0 * w for r0, r1, k in tiles]
        return torch.cat(picks).to(torch.int32)

    def forward_frames(self, feat: Tensor, frames: Sequence[Tensor], valid: Tensor, query_chunk: int = 1024,
                       layout: str = "portable") -> Tensor:
        """The export formulation of :meth:`forward`: static shapes, traceable, static tables only.

        ``feat`` (1, C, H, W); ``frames``: T tensors (1, heads, H*W, 2*head_dim), the k-th nearest
        past frame at index k; ``valid`` (T,) bool, False for frames not (yet) in the buffer.
        Equals ``forward(feat, stack(frames), range(T), valid)`` up to float summation order.
        Queries are processed in static chunks of about ``query_chunk`` (whole tiles: ``query_chunk //
        tile^2`` tiles per chunk with the tiled method; this bounds the key blocks and logits a runtime
        must hold at once). ``layout``: a key of :data:`EXPORT_LAYOUTS` (the tiled method's order of
        operations; the gather method has one).
        """
        if layout not in EXPORT_LAYOUTS:
            raise ValueError(f"layout={layout!r}: choose one of {', '.join(EXPORT_LAYOUTS)}")
        if len(frames) != self.key_frames:
            raise ValueError(f"forward_frames needs all T={self.key_frames} frames (mark missing ones invalid), "
                             f"got {len(frames)}")
        if feat.shape[0] != 1:
            raise ValueError(f"forward_frames runs batch 1 (one stream step), got batch {feat.shape[0]}")
        if self.query_ratio <= 0.0:
            return feat
        if self.method == "gather":
            return self._forward_frames_gather(feat, frames, valid, query_chunk)
        return self._forward_frames_tiles(feat, frames, valid, query_chunk, EXPORT_LAYOUTS[layout])

    def _forward_frames_tiles(self, feat: Tensor, frames: Sequence[Tensor], valid: Tensor, query_chunk: int,
                              layout: ExportLayout) -> Tensor:
        """:meth:`forward_frames` with the tiled attention of :meth:`_forward_tiles`: the T frames' keys and
        values are concatenated once (small: the map, not the windows), each chunk of tiles gathers its key
        blocks with one Gather of a static table, then MatMul, Add (the mask as 0 / -inf biases), Softmax,
        MatMul (the pattern OpenVINO fuses into one attention kernel); ``layout`` (:class:`ExportLayout`) sets
        the tile side and whether keys and values are gathered apart or as whole rows. The result goes back
        as a map: the output projection as a 1x1 convolution of the attention map masked to the selected
        positions, added to the features, which stays in the convolutions' layout (no transposes of the
        feature map) and costs less than the gathered rows and scatter it replaces."""
        c, h, w = (int(x) for x in feat.shape[1:])  # static: plain ints even while tracing
        hd, heads, t = self.head_dim, self.heads, layout.tile
        dev, dt = feat.device, feat.dtype
        q = self.queries(feat)
        sel = self.select_static(q)  # (N,) int32
        tab = tile_tables(h, w, self.half_widths, t)
        ny, nx = tab.tiles_y, tab.tiles_x
        n_tiles, tt, n_keys = ny * nx, t * t, tab.keys(self.key_frames)
        qt = self._tile_queries(q, t)[0]  # (heads, n_tiles, tt, hd)
        if layout.joint_kv:  # zero-padded to the key|value rows: q.[k|v] = q.k
            qt = torch.cat([qt, torch.zeros_like(qt)], -1)
        # portable layout: keys and values apart before the gather (slicing the map is cheap; slicing the
        # blocks is not)
        mem = torch.cat([fr[0] for fr in frames], 1)  # (heads, T*HW, 2hd)
        k_mem, v_mem = mem[..., :hd], mem[..., hd:]
        idx = (tab.frame * (h * w))[None] + tab.pos  # (n_tiles, K) rows of the concatenated frames
        idx = idx.to(dev)
        valid = valid.reshape(-1).to(torch.bool)
        key_valid = valid.index_select(0, tab.frame.to(dev))  # (K,)
        zero = torch.zeros((), dtype=dt, device=dev)
        neg_inf = torch.full((), float("-inf"), dtype=dt, device=dev)
        # additive masks: key outside the query's window (static), key outside the map or in an invalid frame
        window_bias = torch.where(tab.window.to(dev), zero, neg_inf)  # (tt, K)
        # with no valid frame at all nothing is masked but the windows (the result is not used then, and
        # stays finite, so the merge below needs no Where)
        none_valid = ~valid.any()
        inside_bias = torch.where((tab.inside.to(dev) & key_valid[None]) | none_valid, zero, neg_inf)  # (n_tiles, K)
        norms = None
        if self.affinity == "l2":
            norms = k_mem.square().sum(-1) * -hd ** -0.5  # (heads, T*HW)
        step = max(1, query_chunk // tt)
        outs = []
        for i in range(0, n_tiles, step):
            j = min(i + step, n_tiles)
            rows = idx[i:j].reshape(-1)
            if layout.joint_kv:
                k = v = mem.index_select(1, rows).view(heads, j - i, n_keys, 2 * hd)
            else:
                k = k_mem.index_select(1, rows).view(heads, j - i, n_keys, hd)
                v = v_mem.index_select(1, rows).view(heads, j - i, n_keys, hd)
            logits = torch.matmul(qt[:, i:j], k.transpose(-1, -2))  # (heads, m, tt, K)
            if norms is not None:
                logits = logits + norms.index_select(1, rows).view(heads, j - i, 1, n_keys)
            if layout.joint_kv:
                logits = logits + window_bias + inside_bias[i:j, None]
            else:
                logits = logits + (window_bias + inside_bias[i:j, None])  # one pass over the logits
            out = torch.matmul(logits.softmax(-1), v)  # (heads, m, tt, hd or 2 hd)
            outs.append(out[..., hd:] if layout.joint_kv else out)
        # tiles back to a (1, heads*hd, H, W) map (the padding of partial tiles cropped)
        out = torch.cat(outs, 1).view(heads, ny, nx, t, t, hd).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(1, heads * hd, ny * t, nx * t)[:, :, :h, :w]
        # 1 at the selected positions, 0 elsewhere and everywhere when no frame is valid (then every query
        # keeps its feature: it has no valid key)
        picked = torch.zeros(h * w, dtype=dt, device=dev).index_put(
            (sel.to(torch.int64),), valid.any().to(dt)).view(1, 1, h, w)  # distinct positions: no reduction
        # out_proj at the selected positions only, as one 1x1 convolution whose sum the engines fuse with
        # the residual add: [out * picked, picked] against [weight | bias] is W out + b where picked is 1
        # and exactly 0 elsewhere (masking the 32-channel input, not the C-channel output)
        weight = torch.cat([self.out_proj.weight, self.out_proj.bias[:, None]], 1)[:, :, None, None]
        return feat + F.conv2d(torch.cat([out * picked, picked], 1), weight)

    def _forward_frames_gather(self, feat: Tensor, frames: Sequence[Tensor], valid: Tensor, query_chunk: int
                               ) -> Tensor:
        """:meth:`forward_frames` with one gathered window per selected query (previous formulation)."""
        c, h, w = (int(x) for x in feat.shape[1:])  # static: plain ints even while tracing
        hd = self.head_dim
        q = self.queries(feat)
        sel = self.select_static(q)  # (N,) int32
        n_sel = int(sel.shape[0])
        q_rows = q.permute(0, 2, 3, 1).reshape(h * w, -1)
        q_sel = q_rows.index_select(0, sel) * self._query_scale()  # (N, d)
        qf = q_sel.view(n_sel, self.heads, 1, hd).transpose(0, 1)  # (heads, N, 1, hd)
        # zero-padded to 2*hd: q_pad . [k | v] = q . k, so the gathered key|value rows are used as they
        # are (slicing keys and values apart would copy the largest tensor of the step)
        q_pad = torch.cat([qf, torch.zeros_like(qf)], -1)  # (heads, N, 1, 2hd)
        # window positions of every frame from the query positions (int32 arithmetic, no tables)
        ys = torch.div(sel, w, rounding_mode="trunc")
        xs = sel - ys * w
        zero = torch.zeros((), dtype=torch.int32, device=feat.device)
        y_max = torch.full((), h - 1, dtype=torch.int32, device=feat.device)
        x_max = torch.full((), w - 1, dtype=torch.int32, device=feat.device)
        pos, inside = [], []
        for half in self.half_widths:
            r = torch.arange(-half, half + 1, dtype=torch.int32, device=feat.device)
            dy, dx = torch.meshgrid(r, r, indexing="ij")
            ky, kx = ys[:, None] + dy.reshape(1, -1), xs[:, None] + dx.reshape(1, -1)  # (N, n_k)
            inside.append((ky >= 0) & (ky <= y_max) & (kx >= 0) & (kx <= x_max))
            cy, cx = torch.minimum(torch.maximum(ky, zero), y_max), torch.minimum(torch.maximum(kx, zero), x_max)
            pos.append(cy * w + cx)  # clamped into the map (always a valid index; masked if outside)
        _, _, frame = key_window_offsets(self.half_widths)
        valid = valid.reshape(-1).to(torch.bool)
        key_ok = torch.cat(inside, 1) & valid.index_select(0, frame.to(feat.device))[None]  # (N, K)
        neg_inf = torch.full((), float("-inf"), dtype=feat.dtype, device=feat.device)
        sizes = [(2 * half + 1) ** 2 for half in self.half_widths]
        outs = []
        for i in range(0, n_sel, query_chunk):
            j = min(i + query_chunk, n_sel)
            # one gather per frame; keys/values of different frames are never concatenated, only
            # their (small) attention logits are
            kvs = [fr[0].index_select(1, p[i:j].reshape(-1)).view(self.heads, j - i, -1, 2 * hd)
                   for fr, p in zip(frames, pos, strict=True)]  # (heads, m, n_k, 2hd) each
            logits = [torch.matmul(q_pad[:, i:j], kv.transpose(-1, -2)) for kv in kvs]
            if self.affinity == "l2":
                logits = [lg + self._key_term(kv[..., :hd]) for lg, kv in zip(logits, kvs, strict=True)]
            logits = torch.cat(logits, -1)
            logits = torch.where(key_ok[None, i:j, None, :], logits, neg_inf)  # (heads, m, 1, K)
            attn = logits.softmax(-1).split(sizes, -1)
            out = torch.matmul(attn[0], kvs[0])
            for a, kv in zip(attn[1:], kvs[1:], strict=True):
                out = out + torch.matmul(a, kv)  # (heads, m, 1, 2hd): attention-weighted [k | v]
            outs.append(out[..., hd:])
        out = torch.cat(outs, 1).view(self.heads, n_sel, hd).transpose(0, 1).reshape(n_sel, self.heads * hd)
        upd = self.out_proj(out)  # (N, C)
        # a query with no valid key keeps its feature (its softmax was all -inf); the window centre is
        # always inside the map, so that happens exactly when no frame is valid
        upd = torch.where(valid.any(), upd, torch.zeros((), dtype=upd.dtype, device=upd.device))
        rows = feat.permute(0, 2, 3, 1).reshape(h * w, c)
        sel_l = sel.to(torch.int64)
        rows = rows.index_put((sel_l,), rows.index_select(0, sel) + upd)  # distinct positions: no reduction
        return rows.view(1, h, w, c).permute(0, 3, 1, 2)


def dense_temporal_attention(stt: SparseTemporalTransformer, feat: Tensor, memory: Tensor,
                             order: Sequence[int], chunk: int = 1024) -> Tensor:
    """Reference: every position is a query and attends to every key of every used frame.

    Same projections and residual merge as ``stt``; no query or key selection. Queries are
    processed in chunks so memory stays bounded. For tests and the ablation benchmark.
    """
    n_frames = min(len(order), stt.key_frames)
    if n_frames == 0:
        return feat
    b, c, h, w = feat.shape
    hw, hd = h * w, stt.head_dim
    q = stt.queries(feat).view(b, stt.heads, hd, hw).permute(0, 1, 3, 2) * stt._query_scale()  # (B, heads, HW, hd)
    kv = memory[:, list(order[:n_frames])]  # (B, n, heads, HW, 2hd)
    kv = kv.permute(0, 2, 1, 3, 4).reshape(b, stt.heads, n_frames * hw, 2 * hd)
    k, v = kv[..., :hd], kv[..., hd:]
    key_term = stt._key_term(k)  # the same keys for every query chunk
    outs = []
    for i in range(0, hw, chunk):
        logits = torch.matmul(q[:, :, i:i + chunk], k.transpose(-1, -2))
        attn = (logits if key_term is None else logits + key_term).softmax(-1)
        outs.append(torch.matmul(attn, v))
    out = torch.cat(outs, 2).permute(0, 2, 1, 3).reshape(b, hw, stt.heads * hd)
    return feat + stt.out_proj(out).transpose(1, 2).reshape(b, c, h, w)
