"""One model served by several OpenAI-compatible replicas: `openai:MODEL@URL1,URL2,...[?options]`.

Each request goes to the replica with the fewest requests outstanding among those that accept work (breaker
closed, or its trial due). A replica whose breaker opens is taken out: its queued and retrying requests
move to another replica at once, and it comes back when a request sent as its trial succeeds. A request
that errors on one replica (its own retries spent) is tried once on each other replica before it is an
error. Only when every replica is down does the run pause, and it stops resumably past `max_pause`, as
for one endpoint. The options apply to every replica (`concurrency` is per replica).

Replicas must serve identical weights and settings: the model's hash covers each replica's /v1/models
entry, and replicas that report different entries are refused. The hash takes the URLs sorted (they
are interchangeable), and a stopped run resumes on another list that reports the same entry
(`served_elsewhere`, `hashes_at`). Per-replica counts (requests, errors,
moved away, mean latency, the reported model id, the model ids its replies named) go into the run
record. A replica misrouted to other weights may list the same entry; its replies' model ids give it
away: once two replicas' replies name different ids, generate raises ReplicasDisagree (the run fails).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tunesafe.errors import EndpointUnavailable, ReplicasDisagree, UserError
from tunesafe.models.credentials import KeySource
from tunesafe.models.openai_http import POLL_S, OpenAIChatModel, ReplicaDown, endpoint_hash, ref_token_source
from tunesafe.models.refs import REPLICA_SEPARATOR, ModelRef, parse_ref, redact_ref, split_credentials
from tunesafe.types import ChatRequest, Generation, canonical_json

# userinfo (up to the authority's last '@') may hold a comma; host and path may not
_URL = re.compile(r"^https?://(?:[^\s/?#]*@)?[^\s,/@]+(/[^\s,]*)?$")


@dataclass
class ReplicaStats:
    url: str
    model_id: str | None = None
    requests: int = 0
    errors: int = 0
    moved_away: int = 0  # requests sent here that went to another replica because this one was down
    latency_s: float = 0.0
    reported_models: dict[str, int] = field(default_factory=dict)  # the model ids its replies named

    def summary(self) -> dict[str, Any]:
        row = asdict(self)
        row["mean_latency_s"] = round(self.latency_s / self.requests, 4) if self.requests else None
        del row["latency_s"]
        return row


def replica_urls(base_url: str, ref: str) -> list[str]:
    urls = [u.strip().rstrip("/") for u in REPLICA_SEPARATOR.split(base_url)]
    for url in urls:
        if not _URL.match(url):
            raise UserError(f"bad replica URL {redact_ref(url)!r} in {redact_ref(ref)}", where="model ref",
                            fix="write openai:MODEL@http://HOST1:PORT/v1,http://HOST2:PORT/v1")
    if len(set(urls)) != len(urls):
        raise UserError(f"a replica URL is listed twice in {redact_ref(ref)}", where="model ref",
                        fix="list each replica once")
    return urls


def served_elsewhere(given: str, stored: str) -> bool:
    """Whether `given` names the model of `stored` (an openai: ref, the same model name and options) at
    other replicas: listed in another order, or with some replaced, added or removed, where either ref
    lists several. One server's ref stays tied to its URL, as its content hash is."""
    refs = [parse_ref(ref) for ref in (given, stored)]
    if any(r.scheme != "openai" or r.base_url is None for r in refs):
        return False
    lists = [_listed(r.base_url) for r in refs if r.base_url is not None]
    served = {redact_ref(str(replace(r, base_url=None))) for r in refs}
    return len(served) == 1 and lists[0] != lists[1] and max(len(urls) for urls in lists) > 1


def hashes_at(stored: str, model: object) -> set[str]:
    """The content hashes a run of `stored` (an openai: ref) had if its replicas reported what `model`'s
    report now: the URLs in any order, as hashed now and, for runs stored before, as listed."""
    hash_at = getattr(model, "hash_at", None)
    ref = parse_ref(stored)
    if hash_at is None or ref.scheme != "openai" or ref.base_url is None:
        return set()
    urls = _listed(ref.base_url)
    return {hash_at(sorted(urls)), hash_at(urls)}


def hashes_over_the_same(stored: str, given: str, model: object) -> set[str]:
    """`hashes_at`, where `given` (the ref `model` was opened from) lists the replicas of `stored`, in any
    order: what a stored run of them may carry for `model` (reuse). Over other replicas, nothing: a stored
    run stands for the servers it ran on (only a resume moves a run, and keeps its hash)."""
    refs = [parse_ref(ref) for ref in (stored, given)]
    if any(r.scheme != "openai" or r.base_url is None for r in refs):
        return set()
    lists = [sorted(_listed(r.base_url)) for r in refs if r.base_url is not None]
    return hashes_at(stored, model) if lists[0] == lists[1] and len(lists[0]) > 1 else set()


def _listed(base_url: str) -> list[str]:
    """The URLs of a ref as its model hashes them (stored refs were checked when their run started)."""
    return [split_credentials(u.strip().rstrip("/"))[0] for u in REPLICA_SEPARATOR.split(base_url)]


class ReplicatedChatModel:
    backend = "openai"

    def __init__(self, replicas: Sequence[OpenAIChatModel]) -> None:
        self.replicas = list(replicas)
        for replica in self.replicas:
            replica.fail_fast = True
        first = self.replicas[0]
        self.model = first.model
        self.ref = f"openai:{first.model}@{','.join(r.base_url for r in self.replicas)}"
        self.capabilities = first.capabilities
        self.max_pause = first.max_pause
        self._outstanding = [0] * len(self.replicas)
        self._stats = [ReplicaStats(r.base_url) for r in self.replicas]
        self._hash: str | None = None
        self._info: Any = None

    @classmethod
    def from_ref(cls, ref: ModelRef, token_provider: KeySource | None = None) -> ReplicatedChatModel:
        assert ref.base_url is not None
        urls = replica_urls(ref.base_url, str(ref))
        # one token for all replicas: one key command run at start and per refresh, not one per replica
        tokens = ref_token_source(ref, token_provider)
        options = {k: v for k, v in ref.options.items() if k != "key_cmd"} if tokens else ref.options
        return cls([OpenAIChatModel.from_ref(ModelRef(ref.scheme, ref.target, base_url=url, options=options),
                                             token_provider=tokens) for url in urls])

    def content_hash(self) -> str:
        if self._hash is None:
            infos = [r.model_info() for r in self.replicas]
            for stats, info in zip(self._stats, infos, strict=True):
                stats.model_id = info.get("id") if isinstance(info, dict) else None
            if len({canonical_json(i) for i in infos}) > 1:
                shown = "; ".join(f"{s.url}: {canonical_json(i)}"
                                  for s, i in zip(self._stats, infos, strict=True))
                raise UserError(f"the replicas report different models ({shown})", where=self.ref,
                                fix="serve the same weights and settings on every replica")
            self._info = infos[0]
            # Replicas are interchangeable: the order they are listed in is no part of the model
            self._hash = endpoint_hash(self.model, sorted(r.base_url for r in self.replicas), self._info)
        return self._hash

    def hash_at(self, urls: Sequence[str]) -> str:
        """The content hash this model would have if replicas at `urls` reported what these report now."""
        self.content_hash()
        return endpoint_hash(self.model, urls, self._info)

    def paused(self) -> float | None:
        """None while any replica accepts work; else seconds until the earliest trial."""
        if any(r.accepting() for r in self.replicas):
            return None
        return min(r.paused() or 0.0 for r in self.replicas)

    def replica_stats(self) -> list[dict[str, Any]]:
        for stats, replica in zip(self._stats, self.replicas, strict=True):
            stats.reported_models = replica.reported_models()
        return [s.summary() for s in self._stats]

    def reported_models(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for replica in self.replicas:
            total.update(replica.reported_models())
        return dict(total)

    @property
    def folds_system(self) -> bool:
        return any(r.folds_system for r in self.replicas)

    def request_adaptations(self) -> dict[str, str]:
        return {k: v for r in self.replicas for k, v in r.request_adaptations().items()}

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: ChatRequest) -> Generation:
        tried: set[int] = set()
        last: Generation | None = None
        while (index := await self._pick(tried)) is not None:
            replica, stats = self.replicas[index], self._stats[index]
            self._outstanding[index] += 1
            try:
                generation = (await replica.generate([request]))[0]
            except ReplicaDown:
                stats.moved_away += 1
                continue  # not marked tried: it may be back by the time the others have failed too
            finally:
                self._outstanding[index] -= 1
            stats.requests += 1
            stats.latency_s += generation.latency_s
            if generation.error is None:
                self._check_same_model()
                return generation
            stats.errors += 1
            tried.add(index)
            last = generation
        assert last is not None
        return last

    def _check_same_model(self) -> None:
        """Raise ReplicasDisagree once two replicas' replies have named different model ids: a replica
        serving other weights under the listed name. One replica naming several (a provider moving an
        alias) is what a single endpoint may do too."""
        named = [(s.url, r.reported_models()) for s, r in zip(self._stats, self.replicas, strict=True)]
        answered = [(url, sorted(ids)) for url, ids in named if ids]
        if len(answered) > 1 and len({i for _, ids in answered for i in ids}) > 1:
            shown = "; ".join(f"{url}: {', '.join(ids)}" for url, ids in answered)
            raise ReplicasDisagree(f"the replicas' replies name different models ({shown})", where=self.ref,
                                   fix="serve the same weights on every replica, or leave the odd one out of "
                                       "the list, then start a new run (this one's answers may mix models)")

    async def _pick(self, tried: set[int]) -> int | None:
        """The replica with the fewest outstanding requests among the untried ones that accept work.
        None once the request has failed on every replica, or on every one still up (it failed where it
        could be served: a prompt that fails, not an outage). While no replica at all accepts work it
        waits, and stops the run once every replica has been down past max_pause."""
        while len(tried) < len(self.replicas):
            up = [i for i, r in enumerate(self.replicas) if r.accepting()]
            if untried := [i for i in up if i not in tried]:
                return min(untried, key=lambda i: self._outstanding[i])
            if up:
                return None
            if all(r.down_for() > self.max_pause for r in self.replicas):
                raise EndpointUnavailable(
                    f"every replica failed every request for over {self.max_pause:.0f} s", where=self.ref,
                    fix="check the servers, then try again")
            await asyncio.sleep(POLL_S)
        return None
