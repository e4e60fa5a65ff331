"""The workflow graph: adjacency, topological order, cycles, reachability. Main entry: `Graph`.

Works on node ids and `(source, target)` pairs only, so the validator can use it on documents that
are partly invalid, and the engine on parsed models alike. Every method is linear in nodes plus
edges, except `is_ancestor`, which builds ancestor bitsets on first use (one Python int per node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass
class Graph:
    """A directed graph of node ids, in document order.

    Args:
        node_ids: the nodes, in document order (duplicates are ignored after the first).
        edges: `(source, target)` pairs; pairs naming unknown nodes are ignored.
    """

    node_ids: Sequence[str]
    edges: Sequence[tuple[str, str]]
    successors: dict[str, list[str]] = field(init=False)
    predecessors: dict[str, list[str]] = field(init=False)
    _order: dict[str, int] = field(init=False)
    _ancestors: dict[str, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._order = {}
        for node_id in self.node_ids:
            self._order.setdefault(node_id, len(self._order))
        self.successors = {n: [] for n in self._order}
        self.predecessors = {n: [] for n in self._order}
        for source, target in self.edges:
            if source in self._order and target in self._order:
                self.successors[source].append(target)
                self.predecessors[target].append(source)

    @property
    def entries(self) -> list[str]:
        """Nodes without incoming edges: they start at once."""
        return [n for n in self._order if not self.predecessors[n]]

    def topological_order(self) -> list[str] | None:
        """Kahn's algorithm, ties broken by document order; None when the graph has a cycle."""
        order = self._kahn()
        return order if len(order) == len(self._order) else None

    def cycles(self) -> list[list[str]]:
        """One cycle per strongly connected component that has one, as node ids in cycle order.

        Each cycle starts at its component's first node in document order and lists the nodes met
        following edges until the start is reached again (the closing edge is last -> first).
        """
        found: list[list[str]] = []
        for component in self._strongly_connected_components():
            members = set(component)
            if len(component) == 1 and component[0] not in self.successors[component[0]]:
                continue
            start = min(component, key=self._order.__getitem__)
            found.append(self._cycle_through(start, members))
        found.sort(key=lambda cycle: self._order[cycle[0]])
        return found

    def unreachable(self) -> list[str]:
        """Nodes no entry node reaches (in document order)."""
        seen = set(self.entries)
        queue = deque(seen)
        while queue:
            for succ in self.successors[queue.popleft()]:
                if succ not in seen:
                    seen.add(succ)
                    queue.append(succ)
        return [n for n in self._order if n not in seen]

    def is_ancestor(self, ancestor: str, node: str) -> bool:
        """Whether a path leads from `ancestor` to `node` (a node is not its own ancestor)."""
        if ancestor not in self._order or node not in self._order:
            return False
        if ancestor in self.predecessors[node]:
            return True
        if self._ancestors is None:
            self._ancestors = self._ancestor_bitsets()
        return bool(self._ancestors.get(node, 0) >> self._order[ancestor] & 1)

    def upstream_of(self, node: str) -> set[str]:
        """Every node with a path to `node`, cycles included (slower than `is_ancestor`; for
        graphs that are known to be broken)."""
        seen: set[str] = set()
        queue = deque(self.predecessors.get(node, ()))
        while queue:
            pred = queue.popleft()
            if pred not in seen:
                seen.add(pred)
                queue.extend(self.predecessors[pred])
        return seen

    def _ancestor_bitsets(self) -> dict[str, int]:
        # Bit i of bits[n] is set when node number i is an ancestor of n. On a cyclic graph the
        # nodes on cycles are left out (the validator reports the cycle itself).
        order = self._kahn()
        bits: dict[str, int] = {}
        for node in order:
            value = 0
            for pred in self.predecessors[node]:
                value |= bits.get(pred, 0) | (1 << self._order[pred])
            bits[node] = value
        return bits

    def _kahn(self) -> list[str]:
        """Nodes in topological order; nodes on or behind a cycle are left out."""
        indegree = {n: len(p) for n, p in self.predecessors.items()}
        ready = deque(n for n in self._order if indegree[n] == 0)
        order: list[str] = []
        while ready:
            node = ready.popleft()
            order.append(node)
            for succ in self.successors[node]:
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    ready.append(succ)
        return order

    def _strongly_connected_components(self) -> list[list[str]]:
        """Tarjan's algorithm, iterative (a 10,000-node chain must not hit the recursion limit)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        components: list[list[str]] = []
        counter = 0
        for root in self._order:
            if root in index:
                continue
            work: list[tuple[str, Iterable[str]]] = [(root, iter(self.successors[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, children = work[-1]
                advanced = False
                for child in children:
                    if child not in index:
                        index[child] = low[child] = counter
                        counter += 1
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(self.successors[child])))
                        advanced = True
                        break
                    if child in on_stack:
                        low[node] = min(low[node], index[child])
                if advanced:
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
        return components

    def _cycle_through(self, start: str, members: set[str]) -> list[str]:
        """A shortest cycle from `start` back to itself within one component (BFS)."""
        parent: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for succ in self.successors[node]:
                if succ not in members:
                    continue
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1]
                if succ not in parent:
                    parent[succ] = node
                    queue.append(succ)
        return [start]  # unreachable for a real component; kept total for type safety
