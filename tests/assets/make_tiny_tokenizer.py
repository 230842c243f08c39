"""Train the tiny SentencePiece model used by the demo and the tests.

Run from the repository root:

    .venv/bin/python tests/assets/make_tiny_tokenizer.py

It writes `recap_label/assets/tiny_tokenizer.model`. The special ids follow
Gemma's tokenizer (pad=0, eos=1, bos=2, unk=3) so prompts are built exactly as
for the real model; byte fallback keeps every input encodable.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import sentencepiece as spm

from recap_label.demo.tiny_model import TINY_TOKENIZER

OUTPUT = TINY_TOKENIZER
VOCAB_SIZE = 400

_VERBS = ["pick up", "put", "place", "move", "open", "close", "push", "pull", "stack", "grasp", "insert", "pour"]
_OBJECTS = [
    "the red cube",
    "the blue bowl",
    "the vial",
    "the mug",
    "the drawer",
    "the lid",
    "the sponge",
    "the bottle",
    "the green block",
    "the plate",
    "the towel",
    "the black bowl",
    "the cup",
]
_PLACES = [
    "on the plate",
    "in the basket",
    "into the rack",
    "on the left",
    "on the right",
    "next to the sink",
    "in the drawer",
    "on top of the box",
    "onto the tray",
    "behind the bowl",
]


def training_sentences() -> list[str]:
    """Robot-task phrases, as they appear in LeRobot tasks.jsonl, plus the value prompt suffix."""
    sentences = [f"{verb} {obj} {place}" for verb, obj, place in itertools.product(_VERBS, _OBJECTS, _PLACES)]
    sentences += [s.capitalize() + "." for s in sentences[::7]]
    sentences += ["Value:", "value", "unknown task", "sanity check"] * 50
    return sentences


def train(output: Path = OUTPUT) -> Path:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_sentences()),
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        byte_fallback=True,
        # Like Gemma: no normalisation table (keeps the file tiny), newline is its own piece.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        user_defined_symbols=["\n"],
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(model.getvalue())
    return output


if __name__ == "__main__":
    path = train()
    print(f"wrote {path} ({path.stat().st_size} bytes)")
