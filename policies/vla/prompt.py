"""OpenVLA's prompt and its tokenisation.

The prompt is ``In: What action should the robot take to {instruction}?\\nOut: `` with the
instruction lower-cased (OpenVLA's training data pipeline lower-cases instructions). The token
sequence starts with the tokenizer's BOS; the image patches go right after BOS (modeling_openvla).

With Llama-2's tokenizer (the published OpenVLA-7B checkpoints) the sequence ends with id 29871, the
lone SentencePiece space "▁". OpenVLA was trained on the prompt tokenized together with its action
string, where the space after "Out:" becomes that piece before the first action token. The prompt
tokenized alone loses it, so OpenVLA's own inference appends 29871, and so does this module: rollouts,
training and evaluation then all see the inputs the published weights were trained on.
"""
from __future__ import annotations

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut: "
LLAMA2_SPACE_ID = 29871  # "▁" in Llama-2's vocabulary (see the module docstring)


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
    space = llama2_space_id(tokenizer)
    rows = []
    for ids in tokenizer([openvla_prompt(s) for s in instructions], add_special_tokens=True)["input_ids"]:
        ids = list(ids) if ids and ids[0] == bos else [bos, *ids]
        rows.append(ids + [space] if space is not None and ids[-1] != space else ids)
    return rows


def llama2_space_id(tokenizer) -> int | None:
    """29871 when the tokenizer is Llama-2's (that id is its lone space piece), else None."""
    if len(tokenizer) <= LLAMA2_SPACE_ID:
        return None
    return LLAMA2_SPACE_ID if tokenizer.convert_ids_to_tokens(LLAMA2_SPACE_ID) == "\u2581" else None
