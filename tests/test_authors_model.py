"""RefAtomNet against a transcription of the authors' blocks (issue 26, item 2).

The transcription follows KPeng9510/RAVAR ``modules/major.py`` step by step, written out here in the same tensor
shapes and order as there: ``AgentAttention`` with its head reshapes, ``AgentBlock`` (pre-norm attention and timm's
``Mlp``) and the tail of ``Blipv2.forward`` from the encoders' outputs on (the person mask after ``self.proj``, the
unmasked ``.mean(1).mean(1)`` of the text tokens, ``proj_sem``/``proj_box`` over the token axis, the visual block fed
the text and box blocks' agent maps and agents, the sum of the three means, and the heads without a sigmoid).
Dropout is off (eval), as at test time.  ``legacy`` must equal it; the default path must equal it block by block
and differ only by the differences RefAtomNet's docstring names (``DIFFERENCES``).
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

DIM, TOKENS, DETS, AGENTS = 32, 8, 6, 4


class AuthorsAgentAttention(nn.Module):
    """``AgentAttention`` (one head, as every block of the model is built)."""

    def __init__(self, dim, num_heads=1, agent_num=AGENTS):
        super().__init__()
        self.dim, self.num_heads, self.agent_num = dim, num_heads, agent_num
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.pool = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, num_heads * agent_num * dim))

    def forward(self, x, attn_1=None, attn_2=None, agent_tk1=None, agent_tk2=None):
        b, n, c = x.shape
        h, hd = self.num_heads, c // self.num_heads
        q, k, v = self.qkv(x).reshape(b, n, 3, c).permute(2, 0, 1, 3)
        agent_tokens = self.pool(q)
        q = q.reshape(b, n, h, hd).permute(0, 2, 1, 3)
        k = k.reshape(b, n, h, hd).permute(0, 2, 1, 3)
        v = v.reshape(b, n, h, hd).permute(0, 2, 1, 3)
        agent_tokens = agent_tokens.mean(1).reshape(b, self.agent_num, h, hd).permute(0, 2, 1, 3)
        agent_attn = torch.softmax((agent_tokens * self.scale) @ k.transpose(-2, -1), dim=-1)
        agent_rep = agent_attn
        if attn_1 is not None and attn_2 is not None:
            other = attn_1 + attn_2
            agent_attn = (agent_attn * torch.softmax(other, -1) + agent_attn * torch.softmax(other, 1) + agent_attn) / 3
        agent_v = agent_attn @ v
        if agent_tk1 is not None and agent_tk2 is not None:
            other = agent_tk1 + agent_tk2
            agent_tokens = (agent_tokens * torch.softmax(other, -1) + agent_tokens * torch.softmax(other, 1)
                            + agent_tokens) / 3
        q_attn = torch.softmax((q * self.scale) @ agent_tokens.transpose(-2, -1), dim=-1)
        x = (q_attn @ agent_v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x), agent_rep, agent_tokens


class AuthorsAgentBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = AuthorsAgentAttention(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))   # timm Mlp, drop 0

    def forward(self, x, attn_1=None, attn_2=None, agent_tk1=None, agent_tk2=None):
        att_x, att, at = self.attn(self.norm1(x), attn_1, attn_2, agent_tk1, agent_tk2)
        x = x + att_x
        x = x + self.mlp(self.norm2(x))
        return x, att, at


class AuthorsHeadTail(nn.Module):
    """``Blipv2``'s layers after the encoders, and ``forward`` from ``features_image``/``features_text`` on."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4 + DIM, DIM)
        self.agent_temporal, self.agent_box, self.agent_semantic = (AuthorsAgentBlock(DIM) for _ in range(3))
        self.bbox_regressio_head = nn.Sequential(nn.Linear(DIM, 512), nn.ReLU(), nn.Linear(512, 128), nn.ReLU(),
                                                 nn.Linear(128, 4))
        self.classification_head = nn.Sequential(nn.Linear(DIM, 512), nn.Dropout(0.2), nn.ReLU(), nn.Linear(512, 256),
                                                 nn.ReLU(), nn.Linear(256, 80))
        self.proj_box = nn.Linear(DETS, TOKENS)
        self.proj_sem = nn.Linear(1, TOKENS)

    def forward(self, features_image, features_text, det, person):
        bboxes = self.proj(det)
        bboxes[~person] = 0.0 * bboxes[~person]
        features_text = features_text.mean(1).unsqueeze(1)          # .mean(1) over frames is a no-op for one frame
        boxes = self.proj_box(bboxes.permute(0, 2, 1)).permute(0, 2, 1)
        boxes, attn_box, a_t_b = self.agent_box(boxes)
        features_text = self.proj_sem(features_text.permute(0, 2, 1)).permute(0, 2, 1)
        features_text, attn_sem, a_t_s = self.agent_semantic(features_text)
        features_image, _, _ = self.agent_temporal(features_image, attn_sem, attn_box, a_t_s, a_t_b)
        logits = bboxes.mean(1) + features_text.mean(1) + features_image.mean(1)
        return self.classification_head(logits), self.bbox_regressio_head(logits)


def _copy_block(ours, theirs):
    theirs.norm1.load_state_dict(ours.norm1.state_dict())
    theirs.norm2.load_state_dict(ours.norm2.state_dict())
    theirs.attn.qkv.load_state_dict(ours.qkv.state_dict())
    theirs.attn.proj.load_state_dict(ours.proj.state_dict())
    theirs.attn.pool.load_state_dict(ours.agent_mlp.state_dict())
    theirs.mlp.load_state_dict(ours.mlp.state_dict())


def _pair(legacy: bool):
    from refava.train.model import ModelConfig, RefAtomNet

    torch.manual_seed(0)
    ours = RefAtomNet(ModelConfig(dim=DIM, tokens=TOKENS, detections=DETS, text_dim=DIM, legacy=legacy)).eval()
    theirs = AuthorsHeadTail().eval()
    theirs.proj.load_state_dict(ours.det_proj.state_dict())
    theirs.proj_box.load_state_dict(ours.det_tokens.state_dict())
    theirs.proj_sem.load_state_dict(ours.text_expand.state_dict())
    for a, b in ((ours.visual, theirs.agent_temporal), (ours.loc, theirs.agent_box), (ours.text, theirs.agent_semantic)):
        _copy_block(a, b)
    theirs.classification_head.load_state_dict(ours.cls_head.state_dict())
    theirs.bbox_regressio_head.load_state_dict(ours.box_head.state_dict())
    return ours, theirs


def _inputs(padding: bool):
    g = torch.Generator().manual_seed(1)
    visual = torch.randn(3, TOKENS, DIM, generator=g)
    text = torch.randn(3, 7, DIM, generator=g)              # the text encoder's tokens, pads included
    mask = torch.ones(3, 7)
    if padding:
        mask[0, 4:] = 0                                     # a short expression padded to the batch's longest
        mask[2, 6:] = 0
    det = torch.randn(3, DETS, 4 + DIM, generator=g) * 3    # large weights' worth of input: boxes leave [0, 1]
    person = torch.ones(3, DETS, dtype=torch.bool)
    person[:, 4:] = False
    person[1, 1] = False
    det[~person] = 0                                        # refava's table holds zeros where no person is
    return visual, text, mask, det, person


@pytest.mark.parametrize("padding", [False, True])
def test_legacy_equals_the_authors_code(padding):
    ours, theirs = _pair(legacy=True)
    visual, text, mask, det, person = _inputs(padding)
    with torch.no_grad():
        logits, boxes = ours(visual, text, mask, det)
        want_logits, want_boxes = theirs(visual, text, det, person)
    assert torch.allclose(logits, want_logits, atol=1e-5), float((logits - want_logits).abs().max())
    assert torch.allclose(boxes, want_boxes, atol=1e-5), float((boxes - want_boxes).abs().max())
    assert float(want_boxes.min()) < 0 or float(want_boxes.max()) > 1       # the authors' head is unbounded


def test_the_default_path_differs_from_the_authors_only_where_the_docstring_says():
    """Blocks equal to the transcription's; then the three named differences, and nothing else: the mean of the
    streams after the location block (aggregation), the masked text pooling, the box head's sigmoid."""
    from refava.train import model as model_module

    ours, theirs = _pair(legacy=False)
    visual, text, mask, det, person = _inputs(padding=True)
    captured = {}
    ours.cls_head.register_forward_hook(lambda m, args, out: captured.update(feature=args[0]))   # returns None
    with torch.no_grad():
        logits, boxes = ours(visual, text, mask, det)
        m = mask.unsqueeze(-1)
        pooled = ((text * m).sum(1) / m.sum(1)).unsqueeze(1)                       # masked pooling
        t_tok = theirs.proj_sem(pooled.permute(0, 2, 1)).permute(0, 2, 1)
        t_out, attn_sem, a_t_s = theirs.agent_semantic(t_tok)
        projected = theirs.proj(det)
        projected[~person] = 0
        l_out, attn_box, a_t_b = theirs.agent_box(theirs.proj_box(projected.permute(0, 2, 1)).permute(0, 2, 1))
        v_out, _, _ = theirs.agent_temporal(visual, attn_sem, attn_box, a_t_s, a_t_b)
        feature = (v_out.mean(1) + t_out.mean(1) + l_out.mean(1)) / 3                # the paper's aggregation
    assert torch.allclose(captured["feature"], feature, atol=1e-5)
    assert torch.allclose(logits, theirs.classification_head(feature), atol=1e-5)
    assert torch.allclose(boxes, torch.sigmoid(theirs.bbox_regressio_head(feature)), atol=1e-6)   # the sigmoid
    # and each difference is named, with its reason, where a reader looks: the docstring and the list the
    # validation report prints
    names = {d.name for d in model_module.DIFFERENCES}
    assert {"box head sigmoid", "masked text pooling", "aggregation"} <= names
    for d in model_module.DIFFERENCES:
        assert d.reason and d.legacy
    assert "sigmoid" in model_module.__doc__ and "padding mask" in model_module.__doc__


def test_the_two_differences_change_the_output_where_the_docstring_says():
    """Without padding the pooling difference vanishes; with it, legacy (unmasked) and masked pooling differ."""
    ours, _ = _pair(legacy=True)
    visual, text, _, det, _ = _inputs(padding=False)
    mask = torch.ones(3, 7)
    mask[0, 4:] = 0
    with torch.no_grad():
        full, _ = ours(visual, text, torch.ones(3, 7), det)
        padded, _ = ours(visual, text, mask, det)
    assert torch.equal(full, padded)                      # legacy ignores the mask, as the authors' mean does
