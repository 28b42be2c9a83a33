"""OpenVLA's prompt and its tokenisation.

The prompt is ``In: What action should the robot take to {instruction}?\\nOut: `` with the
instruction lower-cased (OpenVLA's training data pipeline lower-cases instructions). The token
sequence starts with the tokenizer's BOS; the image patches go right after BOS (modeling_openvla).
"""
from __future__ import annotations

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut: "


def openvla_prompt(instruction: str) -> str:
    instruction = instruction.strip()
    if not instruction:
        raise ValueError("the instruction is empty")
    return PROMPT_TEMPLATE.format(instruction=instruction.lower())


def prompt_token_ids(tokenizer, instructions: list[str]) -> list[list[int]]:
    """One list of ids per instruction, BOS first (added if the tokenizer does not add it itself)."""
    if isinstance(instructions, str):
        raise TypeError("instructions must be a list of strings, one per env, not one string")
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the tokenizer has no BOS token; OpenVLA's sequence starts with BOS")
    rows = []
    for ids in tokenizer([openvla_prompt(s) for s in instructions], add_special_tokens=True)["input_ids"]:
        rows.append(list(ids) if ids and ids[0] == bos else [bos, *ids])
    return rows
