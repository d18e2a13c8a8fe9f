"""Compare-exchange networks for partial sorting, generated, pruned and pipelined.

:func:`top_k_network` builds a Batcher network (bitonic or odd-even merge) for any number of
inputs by padding to a power of two with entries that never win, then simplifies it:

1. **Forward simplification** (0-1 principle): every 0-1 input vector the network can see is
   enumerated as a bitmask per wire (padding is constant 0; the first ``presorted`` inputs are
   known to be in descending order, as the sorter's own survivors are). A comparator that can
   never exchange is dropped; one that always exchanges is a relabelling of its two wires (no
   hardware). By the 0-1 principle this holds for every input, not only for 0-1 vectors. When
   there are more than :data:`ZERO_ONE_LIMIT` vectors only the padding is propagated.
2. **Pruning** (backward reachability): only the ``keep`` best outputs are used; every
   comparator none of whose outputs can reach a kept output is removed.
3. **Layering**: each remaining comparator goes to the earliest layer after the comparators
   that last touched its two wires (ASAP); the number of layers is the network depth.

The result is a :class:`Network`: a comparator list on physical wires (``hi`` receives the
winner, ``lo`` the loser), the wire that holds each kept output rank, and the counts. The
:class:`hw.sortnet.SortNet` component turns a network into hardware on unsigned keys (the larger key wins),
with a pipeline register every ``layers_per_stage`` layers, global-stall enable and an optional
held selection of one output rank in the last stage.
"""

from dataclasses import dataclass


__all__ = ["Comparator", "Network", "batcher_pairs", "top_k_network", "KINDS", "ZERO_ONE_LIMIT"]


KINDS = ("bitonic", "oddeven")


@dataclass(frozen=True)
class Comparator:
    """One compare-exchange: after it, wire ``hi`` holds the winner and ``lo`` the loser."""
    layer: int
    hi: int
    lo: int


@dataclass(frozen=True)
class Network:
    """A pruned, layered compare-exchange network.

    Attributes
    ----------
    inputs : int
        Wires ``0 … inputs-1`` carry the inputs.
    keep : int
        Kept output ranks (0 is the best).
    kind : str
        ``"bitonic"`` or ``"oddeven"``.
    comparators : tuple of Comparator
        In layer order; ``layer`` counts from 1.
    outputs : tuple of int
        The wire that holds output rank ``r`` after the last layer.
    depth : int
        Layers (0 if there are no comparators).
    generated : int
        Comparators of the unpadded, unpruned power-of-two network it came from.
    """
    inputs: int
    keep: int
    kind: str
    comparators: tuple
    outputs: tuple
    depth: int
    generated: int

    @property
    def size(self):
        """Number of comparators (the hardware cost)."""
        return len(self.comparators)

    def layers(self):
        """Comparators grouped by layer: a list of ``depth`` lists."""
        out = [[] for _ in range(self.depth)]
        for c in self.comparators:
            out[c.layer - 1].append(c)
        return out

    def apply(self, values, key=None):
        """Run the network on a Python list; returns the ``keep`` kept outputs, best first.

        ``key`` maps a value to its sort key (larger wins); identity by default.
        """
        if len(values) != self.inputs:
            raise ValueError(f"network has {self.inputs} inputs, got {len(values)} values")
        key = key or (lambda v: v)
        w = list(values)
        for c in self.comparators:
            if key(w[c.lo]) > key(w[c.hi]):
                w[c.hi], w[c.lo] = w[c.lo], w[c.hi]
        return [w[o] for o in self.outputs]

    def live_after(self, layer):
        """Wires whose value after ``layer`` is still needed (by a later layer or an output)."""
        live = set(self.outputs)
        for c in self.comparators:
            if c.layer > layer:
                live.update((c.hi, c.lo))
        return sorted(live)


def batcher_pairs(n, kind="bitonic"):
    """The full Batcher network for ``n`` (a power of two) inputs sorting in descending order,
    as a list of layers of ``(hi, lo)`` pairs (``hi`` receives the larger value)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"batcher_pairs: n = {n} is not a power of two")
    layers = []
    if kind == "bitonic":
        k = 2
        while k <= n:
            j = k // 2
            while j >= 1:
                layer = []
                for i in range(n):
                    partner = i ^ j
                    if partner > i:
                        # Blocks with (i & k) == 0 sort descending, the others ascending; the
                        # last merge (k == n) is all descending.
                        layer.append((i, partner) if (i & k) == 0 else (partner, i))
                layers.append(layer)
                j //= 2
            k *= 2
    elif kind == "oddeven":
        p = 1
        while p < n:
            k = p
            while k >= 1:
                layer = []
                for j in range(k % p, n - k, 2 * k):
                    for i in range(min(k, n - j - k)):
                        if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                            layer.append((i + j, i + j + k))
                layers.append(layer)
                k //= 2
            p *= 2
    else:
        raise ValueError(f"unknown network kind {kind!r}; choose one of {', '.join(KINDS)}")
    return layers


#: Largest number of 0-1 vectors enumerated for the forward simplification.
ZERO_ONE_LIMIT = 1 << 18


def _zero_one_vectors(inputs, n, presorted):
    """Per position, a bitmask over every admissible 0-1 input vector (None if too many).

    Vector ``v = ones·2^free + rest``: the ``presorted`` leading inputs hold ``ones`` ones
    followed by zeros, the ``free`` others the bits of ``rest``; positions past ``inputs``
    (padding) are 0.
    """
    free = inputs - presorted
    block = 1 << free                            # vectors per value of `ones`
    count = (presorted + 1) * block
    if count > ZERO_ONE_LIMIT:
        return None
    all_ones = (1 << count) - 1
    blocks = all_ones // ((1 << block) - 1)      # bit 0 of every block
    bits = []
    for q in range(presorted):                   # 1 in the blocks with ones > q
        bits.append(all_ones ^ ((1 << ((q + 1) * block)) - 1))
    for p in range(free):                        # bit p of rest: runs of 2^p, period 2^(p+1)
        run = 1 << p
        period = ((1 << block) - 1) // ((1 << (2 * run)) - 1)
        bits.append(period * (((1 << run) - 1) << run) * blocks)
    return bits + [0] * (n - inputs)


def top_k_network(inputs, keep=None, kind="oddeven", prune=True, presorted=0):
    """A network that puts the ``keep`` best of ``inputs`` values, in order, on its outputs.

    Parameters
    ----------
    inputs : int
        Number of inputs (any ``>= 1``); padded internally to the next power of two.
    keep : int, optional
        Kept output ranks; all of them by default.
    kind : str
        ``"bitonic"`` or ``"oddeven"`` (Batcher's odd-even merge sort).
    prune : bool
        Remove comparators that cannot affect a kept output.
    presorted : int
        The first ``presorted`` inputs are known to arrive in descending order (the sorter's
        own survivors); comparators whose outcome this fixes are removed.

    Returns
    -------
    Network
    """
    keep = inputs if keep is None else keep
    if inputs < 1:
        raise ValueError(f"top_k_network: inputs = {inputs} must be at least 1")
    if not 0 <= presorted <= inputs:
        raise ValueError(f"top_k_network: presorted = {presorted} must be in 0 … {inputs}")
    if not 1 <= keep <= inputs:
        raise ValueError(f"top_k_network: keep = {keep} must be in 1 … {inputs}")
    n = 1 << (inputs - 1).bit_length()
    full = batcher_pairs(n, kind)
    generated = sum(map(len, full))

    # 1. Forward simplification. `sym[p]` is the wire at logical position p, or None for
    # padding. With the 0-1 principle, `bits[p]` holds position p's value in every 0-1 input
    # vector allowed by `presorted` (one bit per vector; padding is all zeros): a comparator
    # that never exchanges is dropped, one that always exchanges is a relabelling.
    sym = list(range(inputs)) + [None] * (n - inputs)
    bits = _zero_one_vectors(inputs, n, presorted)
    comps = []                                   # (hi wire, lo wire), in network order
    for layer in full:
        for hi, lo in layer:
            a, b = sym[hi], sym[lo]
            if bits is not None:
                x, y = bits[hi], bits[lo]
                never = y & ~x == 0              # lo is never larger: no exchange
                always = x & ~y == 0             # hi is never larger: always exchange
            else:
                never, always = b is None, a is None
            if never:
                continue
            if always:
                sym[hi], sym[lo] = b, a
                if bits is not None:
                    bits[hi], bits[lo] = bits[lo], bits[hi]
                continue
            comps.append((a, b))                 # physical compare-exchange
            if bits is not None:
                bits[hi], bits[lo] = x | y, x & y
    outputs = sym[:keep]
    assert None not in outputs, "padding reached a kept output"
    # 2. Backward reachability from the kept outputs.
    if prune:
        live = set(outputs)
        kept = []
        for hi, lo in reversed(comps):
            if hi in live or lo in live:
                kept.append((hi, lo))
                live.update((hi, lo))
        comps = kept[::-1]

    # 3. ASAP layering.
    ready = {}
    placed = []
    for hi, lo in comps:
        layer = max(ready.get(hi, 0), ready.get(lo, 0)) + 1
        ready[hi] = ready[lo] = layer
        placed.append(Comparator(layer, hi, lo))
    placed.sort(key=lambda c: c.layer)           # stable: network order within a layer
    depth = max((c.layer for c in placed), default=0)
    return Network(inputs=inputs, keep=keep, kind=kind, comparators=tuple(placed),
                   outputs=tuple(outputs), depth=depth, generated=generated)
