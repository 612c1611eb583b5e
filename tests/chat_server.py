"""A tiny Llama with a ChatML tokenizer, built in code, and a local chat-completions server for it.

- :func:`tiny_tokenizer` trains a byte-level BPE tokenizer on a few sentences (any text, accents
  and emoji included, encodes) and gives it SmolLM2's ChatML chat template.
- :func:`tiny_llama` is a randomly initialised 2-layer Llama for that tokenizer (seeded).
- :class:`ChatServer` answers ``POST /v1/chat/completions`` (the OpenAI / TGI format) and
  ``GET /v1/models`` on 127.0.0.1 with a free port, generating with any generator of lamar-hf (a
  :class:`~lamar_hf.enrich.TransformersGenerator` over the tiny Llama, a :class:`RuleGenerator`).
  A message containing ``FAIL-ME`` gets an HTTP 400. Faults on demand, each bounded: the first
  requests of every prompt answer 503 / 429 with ``Retry-After`` or sleep (:meth:`ChatServer.fail_first`,
  :meth:`ChatServer.sleep_first`), prompts containing a text fail (:meth:`ChatServer.fail_when`), or a
  fixed share of requests fails (:meth:`ChatServer.fail_share`). It answers at most ``max_requests``
  requests and shuts itself down after ``lifetime`` seconds.
- :class:`RuleGenerator` is a real :class:`~lamar_hf.enrich.Generator` that writes well-formed
  answers from the item's metadata by rule, counts its calls, and can be told to misbehave
  (raise, answer nothing, copy the title until retried, be interrupted after N calls).

Run it by hand with ``python tests/chat_server.py`` (prints the URL, stops on Ctrl-C).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lamar_hf.enrich import Generator

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "You describe products of an online shop with short phrases in your own words.",
    "scenario: washing the face at the end of a humid day",
    "intent: clear oily skin and smooth rough texture",
    "topic: glycolic acid face wash",
    "Title: OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce",
    "Brand: OPI\nCategory: Makeup > Nails > Nail Polish\nPrice: $12.00",
    "a parent giving a toddler a bedtime bath before sleep",
    "Crème brûlée body lotion – naïve café 香水 😀",
] * 4
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer with ChatML special tokens and chat template (``<|im_end|>`` ends a turn)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>", chat_template=CHATML)


def tiny_llama(tokenizer, seed: int = 0, layers: int = 2):
    """A random tiny Llama (hidden 16, 4 heads sharing 2 key/value heads) for ``tokenizer``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.5,
    )
    return LlamaForCausalLM(config).eval()


def _field(conversation: list[dict], name: str) -> str:
    for line in conversation[-1]["content"].splitlines():
        if line.startswith(f"{name}: "):
            return line[len(name) + 2:]
    return ""


class RuleGenerator(Generator):
    """A generator that answers by rule from the item's ``Title:`` and ``Category:`` lines.

    ``calls`` counts ``generate`` calls and ``prompts`` the conversations answered. Misbehaviour:
    ``raise_on`` (a text: a conversation containing it raises), ``empty_on`` (answers ""),
    ``copy_title_first`` (greedy answers copy the title; sampled retries are fine),
    ``interrupt_after`` (raise KeyboardInterrupt on that call, like a killed run).
    """

    def __init__(self, raise_on: str | None = None, empty_on: str | None = None, copy_title_first: bool = False,
                 interrupt_after: int | None = None, model_id: str = "rule-generator"):
        self.raise_on, self.empty_on = raise_on, empty_on
        self.copy_title_first = copy_title_first
        self.interrupt_after = interrupt_after
        self.model_id, self.revision, self.adapter, self.prompt = model_id, "v1", None, None
        self.calls = 0
        self.prompts = 0
        self.seen: list[list[dict]] = []

    def generate(self, conversations, decoding=None, progress=None, answer_signals=None):
        self.calls += 1
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt("simulated kill")
        texts = []
        for conversation in conversations:
            text = conversation[-1]["content"]
            if self.raise_on and self.raise_on in text:
                raise RuntimeError(f"backend failure on {self.raise_on!r}")
            self.prompts += 1
            self.seen.append(conversation)
            if self.empty_on and self.empty_on in text:
                texts.append("")
                continue
            title = _field(conversation, "Title")
            leaf = (_field(conversation, "Category").split(" > ")[-1] or "beauty").lower()
            noun = (title.split()[-1] if title else leaf).lower()
            if self.copy_title_first and decoding is not None and not decoding.do_sample and title:
                texts.append(f"scenario: {title}\nintent: get {noun} results\ntopic: {leaf} item")
                continue
            texts.append(f"scenario: a shopper using the {noun} at home\nintent: get {noun} results quickly\n"
                         f"topic: {leaf} item")
        if progress is not None:
            progress.update(len(conversations))
        return texts


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/") == "/info" and self.server.tgi_sha is not None:  # as TGI reports its commit
            self._reply(200, {"model_id": self.server.model_name, "model_sha": self.server.tgi_sha})
            return
        if not self.path.rstrip("/").endswith("/models"):
            self._reply(404, {"error": f"no route {self.path}"})
            return
        self.server.model_listings += 1
        entry = {"id": self.server.model_name, "object": "model", "owned_by": "lamar-tests"}
        if self.server.revision is not None:
            entry["revision"] = self.server.revision
        self._reply(200, {"object": "list", "data": [entry]})

    def do_POST(self):
        from lamar_hf.enrich import DecodingSettings

        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._reply(404, {"error": f"no route {self.path}"})
            return
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        messages = request["messages"]
        prompt = messages[-1]["content"]
        with self.server.lock:
            self.server.requests.append(request)
            self.server.authorizations.append(self.headers.get("Authorization"))
            seen = self.server.seen_prompts.get(prompt, 0)
            self.server.seen_prompts[prompt] = seen + 1
            fault = self.server.fault_for(prompt, seen, len(self.server.requests))
            self.server.log.append({"prompt": prompt, "time": time.monotonic(),
                                    "status": fault[0] if fault and fault[0] else 200})
        if fault is not None:
            status, headers, sleep = fault
            if sleep:
                time.sleep(sleep)
            if status:
                self._reply(status, {"error": f"the test asked for HTTP {status}"}, headers)
                return
        if any("FAIL-ME" in message["content"] for message in messages):
            self._reply(400, {"error": "the test asked this request to fail"})
            return
        temperature = request.get("temperature") or 0.0
        decoding = DecodingSettings(max_new_tokens=int(request.get("max_tokens") or 16),
                                    do_sample=temperature > 0, temperature=temperature or 1.0,
                                    top_p=request.get("top_p") or 1.0, seed=request.get("seed") or 0)
        with self.server.generate_lock:  # one generation at a time: the generator keeps state between calls
            text = self.server.generator.generate([messages], decoding)[0]
        self._reply(200, {
            "id": f"chatcmpl-{len(self.server.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def fault_for(self, prompt: str, seen: int, count: int):
        """(status or None, headers, seconds to sleep) for this request, or None to answer normally."""
        if count > self.max_requests:
            return 410, {}, 0.0
        for times, status, headers, sleep in self.first_faults:
            if seen < times:
                return status, headers, sleep
        for text, status, headers in self.text_faults:
            if text in prompt:
                return status, headers, 0.0
        if self.failing_share:
            share, seed = self.failing_share
            draw = int(hashlib.sha256(f"{seed}|{seen}|{prompt}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            if draw < share:
                return 503, {}, 0.0
        return None


class ChatServer:
    """``with ChatServer(generator) as server: server.url`` — chat completions on 127.0.0.1, port 0.

    ``model`` and ``revision`` are what ``GET /v1/models`` reports; with ``tgi_sha``, ``GET /info``
    answers as TGI does (``model_id``, ``model_sha``). ``requests`` holds every chat
    request's body, ``log`` one ``{"prompt", "time", "status"}`` per request (server-side
    monotonic time), ``authorizations`` the ``Authorization`` header of each.
    """

    def __init__(self, generator, model: str = "tiny-llama", revision: str | None = None, max_requests: int = 5000,
                 lifetime: float = 600.0, tgi_sha: str | None = None):
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.generator = generator
        self.httpd.model_name, self.httpd.revision, self.httpd.tgi_sha = model, revision, tgi_sha
        self.httpd.max_requests = max_requests
        self.httpd.lock = threading.Lock()
        self.httpd.generate_lock = threading.Lock()
        self.httpd.requests, self.httpd.log, self.httpd.authorizations = [], [], []
        self.httpd.seen_prompts = {}
        self.httpd.model_listings = 0
        self.healthy()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.stopper = threading.Timer(lifetime, self.httpd.shutdown)
        self.stopper.daemon = True

    def healthy(self) -> None:
        """No faults from now on; every prompt counts as new."""
        with self.httpd.lock:
            self.httpd.first_faults, self.httpd.text_faults, self.httpd.failing_share = [], [], None
            self.httpd.seen_prompts = {}

    def fail_first(self, times: int, status: int = 503, retry_after: str | None = None) -> None:
        """The first ``times`` requests of every prompt answer ``status`` (with ``Retry-After`` if given)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.httpd.lock:
            self.httpd.first_faults.append((times, status, headers, 0.0))

    def sleep_first(self, times: int, seconds: float) -> None:
        """The first ``times`` requests of every prompt wait ``seconds`` before answering."""
        with self.httpd.lock:
            self.httpd.first_faults.append((times, None, {}, seconds))

    def fail_when(self, text: str, status: int = 503) -> None:
        """Every request whose prompt contains ``text`` answers ``status``."""
        with self.httpd.lock:
            self.httpd.text_faults.append((text, status, {}))

    def fail_share(self, share: float, seed: int = 0) -> None:
        """About ``share`` of the requests answer 503, decided by a hash of (seed, prompt, how many times
        it was asked), so the same requests fail whatever order they arrive in."""
        with self.httpd.lock:
            self.httpd.failing_share = (share, seed)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests

    @property
    def log(self) -> list[dict]:
        return self.httpd.log

    @property
    def authorizations(self) -> list:
        return self.httpd.authorizations

    @property
    def model_listings(self) -> int:
        return self.httpd.model_listings

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        self.stopper.start()
        return self

    def __exit__(self, *exc):
        self.stopper.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    from lamar_hf.enrich import TransformersGenerator

    tokenizer = tiny_tokenizer()
    with ChatServer(TransformersGenerator(tiny_llama(tokenizer), tokenizer=tokenizer, dtype="float32")) as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
