"""RefAtomNet (RAVAR, ECCV 2024): three token streams, agent attention per stream, cross-stream agent fusion into
the visual stream, aggregation, and classification and box heads.

Reconstructed from the paper's text [T] and the authors' code [C] (KPeng9510/RAVAR ``modules/major.py``) as
summarised in the reference notes.  Where the paper is silent, the code's choices are followed: agents are
``mean_tokens(MLP(Q))`` with an MLP d -> d/2 -> a d, the q/k/v projection has no bias (27.3 M trainable parameters at
full size, as the authors report), the agent-key map G is computed from the raw agents and the fused agents enter
only softmax(Q A^T) (the order of the paper's equations), and the location stream takes person detections only.
The ablation switches: ``caaf`` (cross-stream agent attention fusion), ``catf`` (agent token fusion), ``location``
(the location-semantic stream), ``agent_fusion`` (False: plain addition of the three streams, the paper's
"w/o ALSAF", whose Table 3 row equals its "Addition" row).

Deliberate differences from the authors' code, each for a reason (``DIFFERENCES`` lists them for the validation
report; ``legacy`` reproduces the code's side of the first three):

* aggregation: the mean of the three streams (the paper's text); the code sums the streams' token means, with the
  mean of the 100 person-masked projected detections as the location stream's (before the D -> n projection and its
  agent block);
* box head sigmoid: the box head ends in a sigmoid, where the code's has none: boxes are normalised [0, 1] corners,
  and the sigmoid keeps every prediction in that range (outputs differ from the code's by up to 0.57 on random
  weights);
* masked text pooling: text tokens are pooled with their padding mask, where the code takes ``.mean(1).mean(1)``
  over every position: unmasked, an expression's features depend on the longest expression in its batch (logits
  differ by about 0.025 with padding, not at all without);
* box corners: the code converts DETR's (cx, cy, w, h) boxes with width and height swapped; refava's detections use
  the right corners (a bug, not a choice; ``legacy`` does not bring it back);
* person threshold: person detections are kept above a confidence threshold (``--person-threshold``, 0.7), where the
  code keeps every query whose argmax is "person": a query that is barely a person should not steer the referent;
* frames and joins: frames arrive as the dataset stores them (no x 255 uint8 cast, which negates every pixel in the
  code), and boxes, labels and texts are joined by instance id, not by dict insertion order.

One head and four agents, as in the code; the head softmax of the fusion is then all ones and is written out as
such (``fuse``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 80


@dataclass(frozen=True)
class Difference:
    name: str
    ours: str
    authors: str
    reason: str
    legacy: str                     # what ``legacy=True`` does about it


DIFFERENCES = (
    Difference("aggregation", "the mean of the three streams' outputs (the paper's text)",
               "the sum of the visual and text streams' token means and the mean of the 100 person-masked projected "
               "detections", "the paper states the mean; the code's location term skips its own agent block",
               "reproduces the code"),
    Difference("box head sigmoid", "the box head ends in a sigmoid", "no sigmoid",
               "boxes are normalised [0, 1] corners; the sigmoid keeps every prediction in range (up to 0.57 apart "
               "on random weights)", "reproduces the code (no sigmoid)"),
    Difference("masked text pooling", "text tokens averaged over the expression's own tokens (padding mask)",
               "`.mean(1).mean(1)` over every position, pads included",
               "unmasked, an expression's features depend on the longest expression in its batch (logits about "
               "0.025 apart with padding, equal without)", "reproduces the code (unmasked mean)"),
    Difference("box corners", "DETR's (cx, cy, w, h) converted to the right corners",
               "width and height swapped in the conversion", "a bug, not a choice", "keeps refava's"),
    Difference("person threshold", "person detections above a confidence threshold (0.7)",
               "every query whose argmax is person", "a query that is barely a person should not steer the referent",
               "keeps refava's"),
    Difference("frames and joins", "frames as stored; rows joined by instance id",
               "x 255 uint8 cast (negates pixels); joins by dict insertion order", "bugs, not choices",
               "keeps refava's"),
)


@dataclass(frozen=True)
class ModelConfig:
    dim: int = 768                  # token width (the Q-Former's hidden size)
    tokens: int = 32                # tokens per stream (the Q-Former's query tokens)
    agents: int = 4
    detections: int = 100           # detector queries feeding the location-semantic stream
    text_dim: int = 768             # width of the text encoder's tokens (and of the class-name embeddings)
    num_classes: int = NUM_CLASSES
    caaf: bool = True
    catf: bool = True
    location: bool = True
    agent_fusion: bool = True
    legacy: bool = False
    dropout: float = 0.2
    cls_weight: float = 5.0
    box_weight: float = 1.0


class MLP(nn.Sequential):
    def __init__(self, dim_in: int, hidden: int, dim_out: int):
        super().__init__(nn.Linear(dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))


class AgentBlock(nn.Module):
    """Agent attention over one stream's tokens (one head, ``a`` agents from the mean of an MLP of the queries).

    ``x = LN(t); Q, K, V = Linear(x) (no bias); A = mean_tokens(MLP(Q)) as (a, d), the MLP d -> d/2 -> a d;
    G = softmax_tokens(alpha A K^T); B = softmax_agents(alpha Q A'^T); y = t + Linear(B (G V)); out = y + MLP(LN(y))``.
    In the visual stream ``fuse_g`` rewrites G (CAAF) and ``fuse_a`` gives A' (CATF); G is always computed from the
    raw agents A, so that switching CAAF off leaves G exactly as an unfused block has it, whatever CATF does.
    """

    def __init__(self, dim: int, agents: int):
        super().__init__()
        self.dim, self.agents = dim, agents
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.agent_mlp = MLP(dim, dim // 2, agents * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = MLP(dim, 4 * dim, dim)
        self.alpha = dim ** -0.5

    def maps(self, t: torch.Tensor, fuse_a=None, fuse_g=None):
        """(Q, V, A', G): the queries, values, the agents used against the queries, and the agent-key map."""
        q, k, v = self.qkv(self.norm1(t)).chunk(3, dim=-1)
        a = self.agent_mlp(q).mean(dim=1).view(t.shape[0], self.agents, self.dim)
        g = torch.softmax(self.alpha * a @ k.transpose(1, 2), dim=-1)          # (B, a, n): agents over tokens
        if fuse_g is not None:
            g = fuse_g(g)
        if fuse_a is not None:
            a = fuse_a(a)
        return q, v, a, g

    def finish(self, t, q, v, a, g):
        b = torch.softmax(self.alpha * q @ a.transpose(1, 2), dim=-1)          # (B, n, a): tokens over agents
        y = t + self.proj(b @ (g @ v))
        return y + self.mlp(self.norm2(y))

    def forward(self, t: torch.Tensor):
        q, v, a, g = self.maps(t)
        return self.finish(t, q, v, a, g), g, a


def fuse(own: torch.Tensor, others: torch.Tensor, dim: int) -> torch.Tensor:
    """``(X + X * softmax_dim(O) + X * softmax_heads(O)) / 3``; with one head the head softmax is all ones."""
    return (own + own * torch.softmax(others, dim=dim) + own) / 3


class RefAtomNet(nn.Module):
    """Inputs: visual tokens (B, n, d), text tokens (B, L, d) with mask (B, L), detections (B, D, 4 + text_dim)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.text_in = nn.Identity() if c.text_dim == c.dim else nn.Linear(c.text_dim, c.dim)
        self.text_expand = nn.Linear(1, c.tokens)                  # masked mean -> 32 tokens (over the token axis)
        if c.location:                                             # no unused parameters without it (DDP)
            self.det_proj = nn.Linear(4 + c.text_dim, c.dim)
            self.det_tokens = nn.Linear(c.detections, c.tokens)    # 100 detections -> 32 tokens
            self.loc = AgentBlock(c.dim, c.agents)
        self.visual = AgentBlock(c.dim, c.agents)
        self.text = AgentBlock(c.dim, c.agents)
        self.cls_head = nn.Sequential(nn.Linear(c.dim, 512), nn.Dropout(c.dropout), nn.ReLU(), nn.Linear(512, 256),
                                      nn.ReLU(), nn.Linear(256, c.num_classes))
        self.box_head = nn.Sequential(nn.Linear(c.dim, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(),
                                      nn.Linear(128, 4))

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                detections: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        if c.legacy:                                  # the code's .mean(1).mean(1): every position, pads included
            pooled = self.text_in(text.mean(1))
        else:
            m = text_mask.unsqueeze(-1).to(text.dtype)
            pooled = self.text_in((text * m).sum(1) / m.sum(1).clamp(min=1))                # (B, d)
        t_tokens = self.text_expand(pooled.unsqueeze(-1)).transpose(1, 2)                    # (B, n, d)
        t_out, g_t, a_t = self.text(t_tokens)
        use_loc = c.location and detections is not None
        if use_loc:
            # empty slots (no person, or below the threshold) are zeros after the projection, as the code masks them
            present = (detections.abs().sum(-1, keepdim=True) > 0).to(detections.dtype)
            det = self.det_proj(detections) * present                                        # (B, D, d)
            l_tokens = self.det_tokens(det.transpose(1, 2)).transpose(1, 2)
            l_out, g_l, a_l = self.loc(l_tokens)
        if c.agent_fusion:
            g_o = g_t + (g_l if use_loc else 0)
            a_o = a_t + (a_l if use_loc else 0)
            q, v, a, g = self.visual.maps(
                visual, fuse_a=(lambda x: fuse(x, a_o, dim=-1)) if c.catf else None,     # CATF: over channels
                fuse_g=(lambda x: fuse(x, g_o, dim=-1)) if c.caaf else None)             # CAAF: over tokens
            v_out = self.visual.finish(visual, q, v, a, g)
            if c.legacy:
                # the authors' code: the sum of the streams' token means, the location stream's being the mean of
                # the D person-masked projected detections (before the D -> n projection and its agent block)
                feature = v_out.mean(1) + t_out.mean(1) + (det.mean(1) if use_loc else 0)
            else:
                feature = torch.stack([v_out, t_out] + ([l_out] if use_loc else [])).mean(0).mean(dim=1)
        else:
            v_out, _, _ = self.visual(visual)
            feature = (v_out + t_out + (l_out if use_loc else 0)).mean(dim=1)
        boxes = self.box_head(feature)
        return self.cls_head(feature), boxes if c.legacy else torch.sigmoid(boxes)

    def loss(self, logits, boxes, labels, gt_boxes) -> tuple[torch.Tensor, dict]:
        c = self.config
        cls = F.binary_cross_entropy_with_logits(logits, labels)
        box = F.mse_loss(boxes, gt_boxes)
        total = c.cls_weight * cls + c.box_weight * box
        return total, {"bce": float(cls.detach()), "mse": float(box.detach())}
