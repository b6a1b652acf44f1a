"""Prompt prefixes shared across llama.cpp's server slots, so a template's tokens are computed once.

On a CPU, prefill is most of a templated suite's compute: in `make demo` 12,845 prompt tokens per side
against 5,400 generated, and attack templates put the same 100 tokens in front of every behaviour. The
server reuses a prefix only inside one slot (the prompt its last request left there), so 32 slots each
compute the template again, and its prompt cache restores a saved prompt only when most of it matches.

Here every request is pinned to a slot (`id_slot`) and tokenised first with the server's own template and
tokenizer (`/apply-template`, `/tokenize`). The first time a request shares a prefix of at least
`min_tokens` with an earlier prompt, that prefix is prefilled once in the request's slot and saved
(`/slots/N?action=save`); later requests restore it into their slot (`?action=restore`, about a
millisecond) when it holds more of their prompt than the slot has, and the server then computes only the
rest. Requests that arrive while a prefix is being saved wait for it instead of computing it again.

Only the work changes, not what is asked: the prompt sent is the same chat request. A restored prefix was
computed in another batch, so, as with any change of batch on llama.cpp, greedy answers can differ in
rare near-ties. Sharing is an optimisation that fails open: if the server lacks slot saving, or its
token count for a chat disagrees with ours, requests go out unshared.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from tunesafe.types import ChatRequest, Generation

log = logging.getLogger(__name__)
Tokens = tuple[int, ...]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class PrefixIndex:
    """Token sequences kept in sorted order: the longest common prefix with any of them is that with a
    sorted neighbour, so a lookup is a binary search and two comparisons."""

    def __init__(self) -> None:
        self._items: list[Tokens] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, tokens: Tokens) -> None:
        at = bisect.bisect_left(self._items, tokens)
        if at == len(self._items) or self._items[at] != tokens:
            self._items.insert(at, tokens)

    def remove(self, tokens: Tokens) -> None:
        at = bisect.bisect_left(self._items, tokens)
        if at < len(self._items) and self._items[at] == tokens:
            del self._items[at]

    def longest(self, tokens: Tokens) -> tuple[int, Tokens]:
        """(length, item) of the longest prefix `tokens` shares with an item; (0, ()) when empty."""
        at = bisect.bisect_left(self._items, tokens)
        best: tuple[int, Tokens] = (0, ())
        for item in self._items[max(0, at - 1):at + 1]:
            shared = common_prefix(item, tokens)
            if shared > best[0]:
                best = (shared, item)
        return best


class SharedPrefixSlots:
    """Pins requests to the server's slots and shares prompt prefixes between them (module doc)."""

    def __init__(self, url: str, slots: int, save_dir: Path, *, min_tokens: int = 16, timeout: float = 60.0,
                 max_saved_bytes: int = 1 << 30) -> None:
        """`save_dir`: the server's --slot-save-path; saved prefixes beyond `max_saved_bytes` are deleted,
        least recently used first (a 100-token prefix of a 7B model is about 13 MB)."""
        self.url = url
        self.save_dir = save_dir
        self.max_saved_bytes = max_saved_bytes
        self.min_tokens = min_tokens
        self.timeout = timeout
        self.enabled = True
        self.stats = {"requests": 0, "restored": 0, "saved": 0, "reused_tokens": 0}
        self._content: list[Tokens] = [() for _ in range(slots)]  # the prompt each slot holds
        self._seen = PrefixIndex()
        self._snapshots = PrefixIndex()
        self._names: OrderedDict[Tokens, tuple[str, int]] = OrderedDict()  # LRU: file name, bytes
        self._saved_bytes = 0
        self._serial = 0
        self._restoring: Counter[Tokens] = Counter()  # saves being read by the server: never deleted
        self._saving: dict[Tokens, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._free: set[int] = set()
        self._released: asyncio.Condition | None = None
        self._client: httpx.AsyncClient | None = None

    async def generate(self, request: ChatRequest, payload: dict[str, Any],
                       send: Callable[[dict[str, Any]], Awaitable[Generation]]) -> Generation:
        """`send(extra_body)` runs the chat request; `payload` is its body, rendered here to tokens."""
        self._bind_loop()
        tokens = await self._tokens(payload) if self.enabled else None
        slot = await self._acquire(tokens or ())
        try:
            if tokens:
                await self._prepare(slot, tokens)
            generation = await send({"id_slot": slot, "cache_prompt": True})
            if tokens and not generation.error and generation.prompt_tokens not in (0, len(tokens)):
                self._disable(f"the server counted {generation.prompt_tokens} prompt tokens where its "
                              f"/tokenize gave {len(tokens)}")
            self._content[slot] = tokens or ()
            return generation
        except BaseException:
            self._content[slot] = ()  # unknown after a failure: never counted on
            raise
        finally:
            await self._release(slot)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- slots -------------------------------------------------------------------------------------

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a CLI may call asyncio.run more than once; nothing is in flight
            self._loop, self._released = loop, asyncio.Condition()
            self._free = set(range(len(self._content)))
            self._client = httpx.AsyncClient(base_url=self.url, timeout=self.timeout)

    async def _acquire(self, tokens: Tokens) -> int:
        assert self._released is not None
        async with self._released:
            await self._released.wait_for(lambda: bool(self._free))
            slot = max(sorted(self._free), key=lambda s: common_prefix(self._content[s], tokens))
            self._free.discard(slot)
            return slot

    async def _release(self, slot: int) -> None:
        assert self._released is not None
        async with self._released:
            self._free.add(slot)
            self._released.notify()

    # -- prefixes ----------------------------------------------------------------------------------

    async def _prepare(self, slot: int, tokens: Tokens) -> None:
        """Put in `slot` the longest prefix of `tokens` that is saved, and save the longer one an earlier
        prompt shares with it."""
        self.stats["requests"] += 1
        shared, _ = self._seen.longest(tokens)
        self._seen.add(tokens)
        shared = min(shared, len(tokens) - 1)  # the server evaluates at least the last token itself
        while pending := self._pending(slot, tokens):  # a prefix of ours being saved: wait, not redo it
            await asyncio.wait(pending)
        held = common_prefix(self._content[slot], tokens)
        saved, prefix = self._snapshots.longest(tokens)
        new = tokens[:shared] if shared >= max(held, saved) + self.min_tokens else None
        if new is not None:  # claimed before the first await, so requests arriving now wait for it
            self._saving[new] = asyncio.get_running_loop().create_future()
        try:
            if saved >= held + self.min_tokens:
                self._names.move_to_end(prefix)
                self._restoring[prefix] += 1
                try:
                    await self._post(f"/slots/{slot}?action=restore", {"filename": self._names[prefix][0]})
                finally:
                    self._restoring[prefix] -= 1
                    self._evict()
                self._content[slot], held = prefix, saved
                self.stats["restored"] += 1
            if new is not None:
                await self._post("/completion", {"prompt": list(new), "n_predict": 0, "id_slot": slot,
                                                  "cache_prompt": True})
                self._content[slot], held = new, len(new)
                await self._keep(new, slot)
            self.stats["reused_tokens"] += held
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self._content[slot] = ()
            self._disable(f"slot save/restore failed: {exc}")
        finally:
            if new is not None:
                self._saving.pop(new).set_result(None)

    async def _keep(self, prefix: Tokens, slot: int) -> None:
        """Save what `slot` holds (`prefix`) and drop the least recently used saves over the budget."""
        self._serial += 1
        name = f"prefix-{self._serial}.bin"
        written = int((await self._post(f"/slots/{slot}?action=save", {"filename": name}))["n_written"])
        self._names[prefix] = (name, written)
        self._snapshots.add(prefix)
        self._saved_bytes += written
        self.stats["saved"] += 1
        self._evict()

    def _evict(self) -> None:
        """Delete saves over the byte budget, least recently used first; never the newest, never one the
        server is reading."""
        newest = next(reversed(self._names), None)
        for old in [p for p in self._names if p != newest and self._restoring[p] == 0]:
            if self._saved_bytes <= self.max_saved_bytes:
                break
            old_name, size = self._names.pop(old)
            self._snapshots.remove(old)
            self._saved_bytes -= size
            (self.save_dir / old_name).unlink(missing_ok=True)

    def _pending(self, slot: int, tokens: Tokens) -> list[asyncio.Future[None]]:
        have = max(common_prefix(self._content[slot], tokens), self._snapshots.longest(tokens)[0])
        return [done for prefix, done in self._saving.items()
                if common_prefix(prefix, tokens) >= have + self.min_tokens]

    async def _tokens(self, payload: dict[str, Any]) -> Tokens | None:
        try:
            prompt = (await self._post("/apply-template", payload))["prompt"]
            tokens = (await self._post("/tokenize", {"content": prompt, "add_special": True,
                                                     "parse_special": True}))["tokens"]
            return tuple(int(t) for t in tokens)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            self._disable(f"the server could not render a prompt to tokens: {exc}")
            return None

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        assert self._client is not None
        try:
            resp = await self._client.post(path, json=body)
        except httpx.RemoteProtocolError:
            # llama.cpp's server closes a keep-alive connection idle for 5 s (or after 100 requests); a
            # request sent on it as it closes gets no answer. Every call here can be repeated, so once
            # more, on a new connection, before prefix sharing is given up for the whole run.
            resp = await self._client.post(path, json=body)
        if resp.status_code != 200:
            raise ValueError(f"POST {path}: HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def _disable(self, reason: str) -> None:
        if self.enabled:
            log.warning("llama.cpp prefix sharing is off for this server: %s", reason)
        self.enabled = False
