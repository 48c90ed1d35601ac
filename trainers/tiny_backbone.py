"""A tiny SmolVLM-style backbone built offline: config, tokenizer and processor in a local folder.

SmolVLA (and any `transformers` image-text-to-text code) loads its backbone by name; with no hub
access the name must be a local directory holding a SmolVLM config, a tokenizer and a processor
config (docs/references.md, *SmolVLA offline*). This writes one small enough for CPU tests and the offline main
job: hidden 64, 4 text layers, 2 vision layers, 128 px images in 16 px patches, pixel-shuffle 2,
a byte-level BPE trained on driving language. Weights, when written, are random (seeded).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL = {
    "pad_token": "<pad>",
    "bos_token": "<|im_start|>",
    "eos_token": "<end_of_utterance>",
}
# looked up by name by SmolVLMProcessor and by LeRobot's SmolVLA (tokenizer.<name>_id)
NAMED = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "end_of_utterance_token": "<end_of_utterance>",
    "global_image_token": "<global-img>",
}
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] | capitalize }}:"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>Assistant:{% endif %}"
)


@dataclass(frozen=True)
class TinyBackboneConfig:
    hidden: int = 64
    text_layers: int = 4
    heads: int = 4
    vision_layers: int = 2
    image_size: int = 128
    patch: int = 16
    scale_factor: int = 2
    vocab_size: int = 640
    seed: int = 0

    def __post_init__(self) -> None:
        grid = self.image_size // self.patch
        if self.image_size % self.patch or grid % self.scale_factor:
            raise ValueError(f"image_size/patch = {self.image_size}/{self.patch} must be an integer divisible by the "
                             f"pixel-shuffle factor {self.scale_factor}")

    @property
    def image_seq_len(self) -> int:
        return (self.image_size // self.patch) ** 2 // self.scale_factor**2

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _corpus() -> list[str]:
    from core.vocab import HAZARD_KINDS, META_ACTIONS, PHRASINGS

    lines = [p.format(subject=s) for opts in PHRASINGS.values() for p in opts
             for s in ("car", "truck", "van", "line", "pedestrian", "bus", "cyclist", "vehicle")]
    lines += [m.replace("_", " ") for m in META_ACTIONS] + list(META_ACTIONS) + list(HAZARD_KINDS)
    lines += ['{"scene": "two-lane road", "meta_action": "keep_lane", "reason": "clear road", "hazards": []}',
              "Describe the driving scene and answer with a JSON trace.", "User: Assistant:",
              "0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 60 70 80 90 100 m/s km/h metres ahead left right"]
    return lines * 4


def build_tiny_backbone(out_dir: str | Path, cfg: TinyBackboneConfig | None = None, *, with_weights: bool = False) -> Path:
    """Write config.json, tokenizer and processor files (and random weights if asked) to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

    cfg = cfg or TinyBackboneConfig()
    out = Path(out_dir)
    stamp = out / "tiny_backbone.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(cfg) and (out / "config.json").exists() and \
            (not with_weights or (out / "model.safetensors").exists()):
        return out
    out.mkdir(parents=True, exist_ok=True)
    specials = list(dict.fromkeys([*SPECIAL.values(), *NAMED.values()]))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=specials,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, **SPECIAL, extra_special_tokens=NAMED,
                                  model_max_length=2048, padding_side="right")
    vocab = len(tok)
    model_cfg = SmolVLMConfig(
        image_token_id=tok.convert_tokens_to_ids(NAMED["image_token"]), scale_factor=cfg.scale_factor,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
        vision_config={"hidden_size": cfg.hidden, "intermediate_size": 2 * cfg.hidden,
                       "num_hidden_layers": cfg.vision_layers, "num_attention_heads": cfg.heads,
                       "image_size": cfg.image_size, "patch_size": cfg.patch},
        text_config={"model_type": "llama", "vocab_size": vocab, "hidden_size": cfg.hidden,
                     "intermediate_size": 2 * cfg.hidden, "num_hidden_layers": cfg.text_layers,
                     "num_attention_heads": cfg.heads, "num_key_value_heads": cfg.heads,
                     "max_position_embeddings": 2048, "pad_token_id": tok.pad_token_id,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id},
    )
    model_cfg.save_pretrained(out)
    size = {"longest_edge": cfg.image_size}
    image_proc = SmolVLMImageProcessor(do_image_splitting=False, size=size, max_image_size=size, do_resize=True)
    video_proc = SmolVLMVideoProcessor(size=size, max_image_size=size)
    SmolVLMProcessor(image_proc, tok, video_proc, image_seq_len=cfg.image_seq_len,
                     chat_template=CHAT_TEMPLATE).save_pretrained(out)
    if with_weights:
        import torch
        from transformers import AutoModelForImageTextToText

        torch.manual_seed(cfg.seed)
        AutoModelForImageTextToText.from_config(model_cfg).save_pretrained(out)
    stamp.write_text(json.dumps(asdict(cfg), sort_keys=True))
    return out
