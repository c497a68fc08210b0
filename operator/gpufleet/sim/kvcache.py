"""Paged KV-cache blocks with vLLM's automatic prefix caching (pure).

The pool holds ``num_blocks`` blocks of ``block_size`` tokens. A block is *private*
(held by one sequence, content not shareable yet), *cached* (a full prompt block known by
its chained hash, held by one or more sequences) or *evictable* (cached, held by none).
Evictable blocks count as free, as in vLLM V1, and are reclaimed least recently used
first when a sequence needs a block. ``usage`` is therefore held blocks / all blocks —
what vLLM reports as ``vllm:kv_cache_usage_perc``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence


@dataclasses.dataclass(slots=True)
class Holding:
    """The blocks one sequence holds: a prefix of cached hashes, then private blocks."""

    hashes: list[int] = dataclasses.field(default_factory=list)
    private: int = 0

    @property
    def blocks(self) -> int:
        return len(self.hashes) + self.private


class BlockPool:
    """Block accounting for one replica's KV cache."""

    def __init__(self, num_blocks: int, *, block_size: int = 16, caching: bool = True) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = caching
        self._free = num_blocks
        self._refs: dict[int, int] = {}
        self._evictable: OrderedDict[int, None] = OrderedDict()

    @property
    def free_blocks(self) -> int:
        """Blocks a sequence could get now: never used plus evictable."""
        return self._free + len(self._evictable)

    @property
    def used_blocks(self) -> int:
        return self.num_blocks - self.free_blocks

    @property
    def usage(self) -> float:
        return self.used_blocks / self.num_blocks

    def cached_prefix(self, hashes: Sequence[int]) -> int:
        """How many leading ``hashes`` are cached (held or evictable)."""
        if not self.caching:
            return 0
        count = 0
        for h in hashes:
            if h not in self._refs and h not in self._evictable:
                break
            count += 1
        return count

    def acquire_cached(self, holding: Holding, hashes: Sequence[int]) -> None:
        """Make ``holding`` share the cached blocks ``hashes`` (from ``cached_prefix``)."""
        for h in hashes:
            if h in self._evictable:
                del self._evictable[h]
                self._refs[h] = 1
            else:
                self._refs[h] += 1
            holding.hashes.append(h)

    def can_allocate(self, blocks: int) -> bool:
        return blocks <= self.free_blocks

    def allocate(self, holding: Holding, blocks: int) -> bool:
        """Give ``holding`` ``blocks`` private blocks; False (and nothing taken) if short."""
        if blocks > self.free_blocks:
            return False
        fresh = min(blocks, self._free)
        self._free -= fresh
        for _ in range(blocks - fresh):
            self._evictable.popitem(last=False)
        holding.private += blocks
        return True

    def register(self, holding: Holding, hashes: Sequence[int]) -> None:
        """Turn private blocks just filled with prompt blocks ``hashes`` into cached ones.

        ``hashes`` continue the holding's cached prefix. A hash another sequence already
        cached stays private here (vLLM would deduplicate later; the count is the same).
        """
        if not self.caching:
            return
        for h in hashes:
            if holding.private == 0 or h in self._refs or h in self._evictable:
                return
            holding.private -= 1
            self._refs[h] = 1
            holding.hashes.append(h)

    def release(self, holding: Holding) -> None:
        """Return all of ``holding``'s blocks; its cached blocks become evictable."""
        for h in reversed(holding.hashes):
            self._refs[h] -= 1
            if self._refs[h] == 0:
                del self._refs[h]
                self._evictable[h] = None
        self._free += holding.private
        holding.hashes.clear()
        holding.private = 0
