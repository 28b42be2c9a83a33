import numpy as np
import pytest

from policies.vla.action_tokenizer import ActionStats, ActionTokenizer

VOCAB = 32000  # Llama 2's, as in OpenVLA-7B


def test_every_bin_centre_round_trips_to_itself_and_uses_the_last_ids():
    tok = ActionTokenizer(VOCAB)
    assert len(tok.bin_centers) == 255
    ids = tok.encode(tok.bin_centers)
    np.testing.assert_array_equal(ids, VOCAB - 1 - np.arange(255))
    np.testing.assert_array_equal(tok.decode(ids), tok.bin_centers)
    # every action id decodes to a centre; 255 of the 256 ids are distinct bins, the top id shares the top bin
    all_ids = np.arange(VOCAB - 256, VOCAB)
    decoded = tok.decode(all_ids)
    assert len(np.unique(decoded)) == 255
    assert decoded[0] == decoded[1] == tok.bin_centers[-1]


def test_edges_and_out_of_range_values_clip_to_the_end_bins():
    tok = ActionTokenizer(VOCAB)
    ids = tok.encode(np.array([-1.0, 1.0, -5.0, 7.0, np.nextafter(1.0, 0.0)]))
    np.testing.assert_array_equal(ids, [VOCAB - 1, VOCAB - 256, VOCAB - 1, VOCAB - 256, VOCAB - 255])
    decoded = tok.decode(ids)
    np.testing.assert_allclose(decoded, [tok.bin_centers[0], tok.bin_centers[-1], tok.bin_centers[0],
                                         tok.bin_centers[-1], tok.bin_centers[-1]])
    # ids outside the action range (text ids, padding ids above the vocabulary) decode to the nearest end bin
    np.testing.assert_allclose(tok.decode(np.array([0, VOCAB - 257, VOCAB, VOCAB + 63])),
                               tok.bin_centers[[-1, -1, 0, 0]])
    with pytest.raises(ValueError):
        tok.encode(np.array([np.nan]))


def test_random_actions_decode_within_half_a_bin():
    tok = ActionTokenizer(VOCAB)
    a = np.random.default_rng(0).uniform(-1, 1, size=(1000, 7))
    assert np.abs(tok.decode(tok.encode(a)) - a).max() <= (2 / 255) / 2 + 1e-12


def test_unnormalize_uses_q01_q99_and_leaves_masked_dims():
    stats = ActionStats.from_norm_stats({"bridge": {"action": {
        "q01": [-0.1, 0.0, 2.0], "q99": [0.3, 1.0, 4.0], "mask": [True, True, False]}}})
    out = stats.unnormalize(np.array([[-1.0, 0.0, 0.5], [1.0, 1.0, -1.0]]))
    np.testing.assert_allclose(out, [[-0.1, 0.5, 0.5], [0.3, 1.0, -1.0]])
    with pytest.raises(ValueError):
        stats.unnormalize(np.zeros((1, 7)))
    with pytest.raises(ValueError):
        ActionStats.from_norm_stats({"a": {"action": {"q01": [0], "q99": [1]}}, "b": {}})
