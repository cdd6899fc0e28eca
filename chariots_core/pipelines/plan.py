"""Execution plans: a pipeline compiled into flat steps over numbered value slots.

Each node becomes one step that reads its arguments from slots and writes its outputs to
slots. Slots are allocated like registers: a slot is reused (so its value is dropped) as soon
as the last node that reads it has run, which is how runners free intermediate values early.
Runs of single-input nodes that feed only the next node are fused into one chain step whose
values never touch a slot, so a linear pipeline costs little more than calling its ops.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from .nodes import BaseNode, Node, ReservedNodes

__all__ = ["ExecutionPlan", "StepKind", "Wiring", "compile_plan"]

PIPELINE_INPUT = ReservedNodes.pipeline_input.value
PIPELINE_OUTPUT = ReservedNodes.pipeline_output.value
_DISCARD = -1  # slot of an output that no node consumes

Wiring = dict[int, tuple[list[str], list[str]]]
"""Each node's (input names, output names), by ``id(node)``."""


class StepKind:
    """How a runner should execute a step (plain ints: compared on the hot path)."""

    SIMPLE = 0  # one input, one kept output, nothing to release: out = call(in)
    GENERAL = 1  # any number of inputs/outputs, releases slots afterwards
    NESTED = 2  # a pipeline used as a node: run it with the same runner
    CHAIN = 3  # consecutive SIMPLE steps, each the only reader of the previous one's output


@attrs.frozen
class ExecutionPlan:
    """A pipeline compiled for execution.

    ``steps`` holds one tuple per node, in topological order:
    ``(kind, call, input_slots, output_slots, release_slots, node)``. For ``SIMPLE`` steps
    ``input_slots`` and ``output_slots`` are single ints. Slot 0 holds the pipeline input;
    ``output_slot`` is where ``__pipeline_output__`` lands (``None`` if nothing produces it).

    ``fused_steps`` are the same steps with each run of ``SIMPLE`` steps, where a step's output
    is read only by the next step, fused into one ``CHAIN`` step
    ``(CHAIN, ((call, node), ...), input_slot, output_slot, (), first_node)``: the values
    inside the run never touch a slot. A runner that calls no per-node hook can run these.
    """

    steps: tuple[tuple, ...]
    n_slots: int
    output_slot: int | None
    fused_steps: tuple[tuple, ...]


def compile_plan(ordered: list[BaseNode], wiring: Wiring) -> ExecutionPlan:
    """Compile nodes in run order, with their (inputs, outputs) names by ``id``, into a plan."""
    last_use: dict[str, int] = {}
    for index, node in enumerate(ordered):
        for name in wiring[id(node)][0]:
            last_use[name] = index
    slot_of = {PIPELINE_INPUT: 0}
    free: list[int] = []
    n_slots = 1
    if PIPELINE_INPUT not in last_use:
        free.append(0)  # nobody reads the input: its slot is free from the start
    steps = []
    readers = Counter(name for node in ordered for name in set(wiring[id(node)][0]))
    # Per step: whether its output is read by the next step and by no other.
    chains_on: list[bool] = []
    for index, node in enumerate(ordered):
        inputs, outputs = wiring[id(node)]
        input_slots = tuple(slot_of[name] for name in inputs)
        freed = [slot_of[name] for name in dict.fromkeys(inputs) if last_use[name] == index]
        free.extend(freed)
        output_slots = []
        for name in outputs:
            if name in last_use or name == PIPELINE_OUTPUT:
                if free:
                    slot = free.pop()
                else:
                    slot, n_slots = n_slots, n_slots + 1
                slot_of[name] = slot
                output_slots.append(slot)
            else:
                output_slots.append(_DISCARD)
        releases = tuple(slot for slot in freed if slot not in output_slots)
        nested = isinstance(node, Node) and node.requires_runner
        call: Any = node.op if nested else node.executor()
        if nested:
            kind = StepKind.NESTED
        elif len(input_slots) == len(output_slots) == 1 and output_slots[0] != _DISCARD and not releases:
            kind = StepKind.SIMPLE
        else:
            kind = StepKind.GENERAL
        if kind == StepKind.SIMPLE:
            steps.append((kind, call, input_slots[0], output_slots[0], releases, node))
            chains_on.append(readers[outputs[0]] == 1 and last_use.get(outputs[0]) == index + 1)
        else:
            steps.append((kind, call, input_slots, tuple(output_slots), releases, node))
            chains_on.append(False)
    fused = _fuse_chains(steps, chains_on)
    return ExecutionPlan(tuple(steps), n_slots, slot_of.get(PIPELINE_OUTPUT), fused)


def _fuse_chains(steps: list[tuple], chains_on: list[bool]) -> tuple[tuple, ...]:
    """Fuse each run of SIMPLE steps that feed only the next SIMPLE step into a CHAIN step."""
    fused: list[tuple] = []
    run: list[tuple] = []
    for step, continues in zip(steps, chains_on):
        if step[0] == StepKind.SIMPLE:
            run.append(step)
            if continues:
                continue
        if run:
            fused.append(_chain(run))
            run = []
        if step[0] != StepKind.SIMPLE:
            fused.append(step)
    if run:
        fused.append(_chain(run))
    return tuple(fused)


def _chain(run: list[tuple]) -> tuple:
    if len(run) == 1:
        return run[0]
    pairs = tuple((step[1], step[5]) for step in run)
    return (StepKind.CHAIN, pairs, run[0][2], run[-1][3], (), run[0][5])
