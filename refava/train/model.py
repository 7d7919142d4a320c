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

Deliberate differences from the authors' code, each for a reason:

* aggregation is the mean of the three streams (the paper's text); ``legacy`` is the code's path: the sum of the
  streams' token means, with the mean of the 100 person-masked projected detections as the location stream's;
* the code converts DETR's (cx, cy, w, h) boxes with width and height swapped; refava's detections use the right
  corners (a bug, not a choice);
* person detections are kept above a confidence threshold (``--person-threshold``, 0.7), where the code keeps every
  query whose argmax is "person": a query that is barely a person should not steer the referent;
* one head and four agents, as in the code; the head softmax of the fusion is then all ones and is written out as
  such (``fuse``);
* frames arrive as the dataset stores them (no x 255 uint8 cast, which negates every pixel in the code), and
  boxes, labels and texts are joined by instance id, not by dict insertion order;
* the box head ends in a sigmoid, where the code's has none: boxes are normalised [0, 1] corners, and the sigmoid
  keeps every prediction in that range (outputs differ from the code's by up to 0.57 on random weights);
* text tokens are pooled with their padding mask, where the code takes ``.mean(1).mean(1)`` over every position:
  unmasked, an expression's features depend on the longest expression in its batch (logits differ by about 0.025
  with padding, not at all without).  ``legacy`` keeps both of these differences for now (issue 26 asks it to
  reproduce the code's head and pooling too).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

NUM_CLASSES = 80


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
        m = text_mask.unsqueeze(-1).to(text.dtype)
        pooled = self.text_in((text * m).sum(1) / m.sum(1).clamp(min=1))                    # (B, d)
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
        return self.cls_head(feature), torch.sigmoid(self.box_head(feature))

    def loss(self, logits, boxes, labels, gt_boxes) -> tuple[torch.Tensor, dict]:
        c = self.config
        cls = F.binary_cross_entropy_with_logits(logits, labels)
        box = F.mse_loss(boxes, gt_boxes)
        total = c.cls_weight * cls + c.box_weight * box
        return total, {"bce": float(cls.detach()), "mse": float(box.detach())}
