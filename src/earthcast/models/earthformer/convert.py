"""Map a state dict of the reference implementation onto :class:`Earthformer`.

The reference is PyPI ``earthformer`` 0.2.1 (= the official amazon-science code), class
``CuboidTransformerModel``. Keys are renamed by an ordered list of regular expressions; the
reference's non-learned ``relative_position_index`` buffers are dropped (earthcast computes
them). The result loads with ``strict=True`` — any unmapped key is reported, never ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

# (pattern, replacement), applied in order to every key
_RULES: list[tuple[str, str]] = [
    # model level
    (r"^init_global_vectors$", "global_vectors"),
    (r"^dec_final_proj\.", "out_proj."),
    (r"^enc_pos_embed\.", "enc_pos."),
    (r"^dec_pos_embed\.", "dec_pos."),
    (r"\.T_embed\.", ".t."),
    (r"\.H_embed\.", ".h."),
    (r"\.W_embed\.", ".w."),
    (r"\.HW_embed\.", ".hw."),
    # stems and heads
    (r"^initial_encoder\.conv_block_list\.(\d+)\.", r"stem.stages.\1.convs."),
    (r"^initial_encoder\.patch_merge_list\.(\d+)\.", r"stem.stages.\1.merge."),
    (r"^initial_encoder\.conv_block\.", "stem.convs."),
    (r"^initial_encoder\.patch_merge\.", "stem.merge."),
    (r"^final_decoder\.upsample_list\.(\d+)\.", r"head.stages.\1.upsample."),
    (r"^final_decoder\.conv_block_list\.(\d+)\.", r"head.stages.\1.convs."),
    (r"^final_decoder\.upsample\.", "head.upsample."),
    (r"^final_decoder\.conv_block\.", "head.convs."),
    # encoder / decoder containers
    (r"^encoder\.blocks\.", "encoder.levels."),
    (r"^encoder\.down_layers\.", "encoder.downsamples."),
    (r"^encoder\.down_layer_global_proj\.", "encoder.global_downsamples."),
    (r"^decoder\.upsample_layers\.", "decoder.upsamples."),
    (r"^decoder\.hierarchical_pos_embed_l\.", "decoder.level_pos."),
    # blocks
    (r"\.attn_l\.", ".attns."),
    (r"\.global_ffn_l\.", ".global_ffns."),
    (r"\.ffn_l\.", ".ffns."),
    (r"\.ffn_1_gate\.", ".fc1_gate."),
    (r"\.ffn_1\.", ".fc1."),
    (r"\.ffn_2\.", ".fc2."),
    (r"(\.ffns\.\d+|\.global_ffns\.\d+)\.layer_norm\.", r"\1.norm."),
    # attention layers
    (r"\.relative_position_bias_table$", ".rel_bias.table"),
    (r"\.global_vec_norm\.", ".glob.norm."),
    (r"\.global_qkv\.", ".glob.qkv."),
    (r"\.g2l_global_q_net\.", ".glob.q."),
    (r"\.g2l_k_net\.", ".glob.token_k."),
    (r"\.g2l_v_net\.", ".glob.token_v."),
    (r"\.g2g_global_qkv_net\.", ".glob.self_qkv."),
    (r"\.global_proj\.", ".glob.proj."),
    (r"\.q_proj\.", ".q."),
    (r"\.kv_proj\.", ".kv."),
]
# l2g nets exist in both self- (→ glob.*) and cross-attention (→ global_*) layers
_SELF_L2G = [(r"\.l2g_q_net\.", ".glob.token_q."), (r"\.l2g_global_kv_net\.", ".glob.kv.")]
_CROSS_L2G = [(r"\.l2g_q_net\.", ".global_token_q."), (r"\.l2g_global_kv_net\.", ".global_kv.")]
_DROPPED = re.compile(r"relative_position_index$")


def convert_key(key: str) -> str | None:
    """earthcast name of reference key ``key`` (None for buffers that are not carried over)."""
    if _DROPPED.search(key):
        return None
    new = key
    for pattern, repl in _RULES:
        new = re.sub(pattern, repl, new)
    for pattern, repl in _CROSS_L2G if ".cross_blocks." in key else _SELF_L2G:
        new = re.sub(pattern, repl, new)
    return new


def convert_reference_state_dict(
    state_dict: Mapping[str, Tensor], preset: str | None = None
) -> dict[str, Tensor]:
    """Rename a reference ``CuboidTransformerModel`` state dict for earthcast's ``Earthformer``.

    Args:
        state_dict: reference weights (a ``state_dict()`` or the official ``.pt`` file's content;
            a ``{"state_dict": …}`` Lightning checkpoint and ``torch_nn_module.`` prefixes are
            unwrapped).
        preset: optional preset name; when given the converted dict is checked against a model
            built from it and a ``ValueError`` lists missing/unexpected keys or shape mismatches.

    Returns:
        A state dict that ``Earthformer(get_preset(preset)).load_state_dict(…, strict=True)`` accepts.
    """
    sd = state_dict.get("state_dict", state_dict) if isinstance(state_dict, Mapping) else state_dict
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        key = key.removeprefix("torch_nn_module.").removeprefix("module.")
        new = convert_key(key)
        if new is not None:
            out[new] = value
    if preset is not None:
        _check_against_preset(out, preset)
    return out


def _check_against_preset(sd: Mapping[str, Tensor], preset: str) -> None:
    from earthcast.models.earthformer.model import Earthformer
    from earthcast.models.earthformer.presets import get_preset

    expected = Earthformer(get_preset(preset)).state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = [k for k in set(expected) & set(sd) if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(
            f"the checkpoint does not match preset '{preset}': {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, shape mismatches {sorted(shapes)[:5]}. "
            "Is it a checkpoint of a different model or dataset preset?"
        )
