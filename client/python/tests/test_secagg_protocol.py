"""tally.secagg's state machines in Python alone (the C++ twins are tested in
tests/secagg_protocol_test.cc; mixed rounds in test_secagg_vectors.py).
Inputs are multiples of 2^-10, so the expected sums are integer arithmetic
done here: sum m * 2^(f - 10)."""
import numpy as np
import pytest

from tally import secagg
from tally import secagg_crypto as sc
from test_secagg_vectors import grid_inputs, run_round

D = secagg.DONE


def expect_sum(server, m, masked, total, bits):
    expected = sum(m[i - 1].astype(np.int64) << (server.f - 10) for i in masked)
    assert np.array_equal(secagg.signed_sums(bits, total), expected)


def python_client(params, i, neighbours):
    return secagg.SecAggClient(params, i, neighbours)


def test_fraction_bits_and_quantization_by_hand():
    # n = 5, clip = 8, b = 32: 5 * 2^(f+3) <= 2^31 - 1 gives f = 25.
    assert secagg.fraction_bits(secagg.SecAggParams(1, 5, 4, 3, 32, 8.0, 1)) == 25
    p = secagg.SecAggParams(1, 2, 1, 1, 32, 1.0, 5)
    assert secagg.fraction_bits(p) == 29
    q = secagg.quantize(p, 29, np.array([0.5, 2.0, -3.0, 2.0 ** -30, 3 * 2.0 ** -30], "f4"))
    assert list(secagg.signed_sums(32, q)) == [1 << 28, 1 << 29, -(1 << 29), 0, 2]


@pytest.mark.parametrize("stage", [secagg.ADVERTISE_KEYS, secagg.SHARE_KEYS,
                                   secagg.MASKED_INPUT, secagg.UNMASK])
def test_single_dropout_at_each_stage(stage):
    params = secagg.SecAggParams(7, 10, 4, 3, 64, 8.0, 300)
    m, x = grid_inputs(10, 300, 3)
    drop_at = [D] * 10
    drop_at[6] = stage
    server, masked, total = run_round(params, python_client, x, drop_at, chunk=64)
    expect_sum(server, m, masked, total, 64)


def test_dropouts_at_every_stage_in_one_round():
    params = secagg.SecAggParams(8, 10, 9, 5, 32, 8.0, 200)
    m, x = grid_inputs(10, 200, 4)
    drop_at = [secagg.ADVERTISE_KEYS, secagg.SHARE_KEYS, secagg.MASKED_INPUT, secagg.UNMASK] + \
        [D] * 6
    server, masked, total = run_round(params, python_client, x, drop_at)
    assert sorted(masked) == [4, 5, 6, 7, 8, 9, 10]
    expect_sum(server, m, masked, total, 32)


@pytest.mark.parametrize("stage", [secagg.ADVERTISE_KEYS, secagg.SHARE_KEYS,
                                   secagg.MASKED_INPUT, secagg.UNMASK])
def test_below_threshold_fails_cleanly(stage):
    params = secagg.SecAggParams(9, 5, 4, 3, 32, 8.0, 20)
    _, x = grid_inputs(5, 20, 5)
    drop_at = [D] * 5
    for i in (0, 2, 4) if stage != secagg.UNMASK else (1, 2, 3):
        drop_at[i] = stage
    with pytest.raises(sc.SecAggError) as e:
        run_round(params, python_client, x, drop_at)
    assert e.value.kind == "failed_precondition"


def stages_to_masked(params, x):
    server = secagg.SecAggServer(params, b"\x01" * 32)
    clients = [secagg.SecAggClient(params, i, server.graph[i]) for i in range(1, 6)]
    for c in clients:
        server.receive_keys(c.advertise_keys())
    server.close_advertise_keys()
    msgs = [c.share_keys(server.keys_for(c.index)) for c in clients]
    return server, clients, msgs


def stages_to_inboxes(params, x):
    """Keys and shares of five clients in, the share stage closed."""
    server, clients, msgs = stages_to_masked(params, x)
    for msg in msgs:
        server.receive_shares(msg)
    server.close_share_keys()
    return server, clients


def error_kind(fn, *args):
    with pytest.raises(sc.SecAggError) as e:
        fn(*args)
    return e.value.kind


def test_hostile_messages_get_precise_errors_and_change_nothing():
    params = secagg.SecAggParams(10, 5, 4, 3, 32, 8.0, 16)
    m, x = grid_inputs(5, 16, 6)
    server, clients, msgs = stages_to_masked(params, x)
    late = secagg.KeyAdvertisement(1, b"a" * 32, b"b" * 32)
    assert error_kind(server.receive_keys, late) == "failed_precondition"  # Stage over.
    short = secagg.ShareKeysMessage(1, msgs[0].self_mask_commitment, msgs[0].shares[:-1])
    assert error_kind(server.receive_shares, short) == "invalid_argument"
    cut = secagg.ShareKeysMessage(1, msgs[0].self_mask_commitment,
                                  [secagg.EncryptedShare(e.sender, e.receiver, e.ciphertext[:-1])
                                   for e in msgs[0].shares])
    assert error_kind(server.receive_shares, cut) == "invalid_argument"
    for msg in msgs:
        server.receive_shares(msg)
    assert error_kind(server.receive_shares, msgs[2]) == "already_exists"
    server.close_share_keys()
    ys = [c.masked_input(server.inbox_for(c.index), x[c.index - 1]) for c in clients]
    assert error_kind(server.receive_masked_chunk, 1, 0, ys[0] + b"\0\0\0\0") == "invalid_argument"
    assert error_kind(server.receive_masked_chunk, 1, 0, ys[0][:6]) == "invalid_argument"
    for i, y in enumerate(ys, 1):
        server.receive_masked_chunk(i, 0, y)
    assert error_kind(server.receive_masked_chunk, 2, 0, ys[1]) == "already_exists"
    server.close_masked_input()
    responses = [c.unmask(server.survivors) for c in clients]
    bad = secagg.UnmaskResponse(1, list(responses[0].shares))
    bad.shares[0] = secagg.RevealedShare(bad.shares[0].owner, secagg.MASK_KEY, bad.shares[0].values)
    assert error_kind(server.receive_unmask, bad) == "invalid_argument"
    big = secagg.UnmaskResponse(1, list(responses[0].shares))
    big.shares[0] = secagg.RevealedShare(big.shares[0].owner, secagg.SELF_MASK, b"\xff" * 64)
    assert error_kind(server.receive_unmask, big) == "invalid_argument"
    for r in responses:
        server.receive_unmask(r)
    assert error_kind(server.receive_unmask, responses[0]) == "already_exists"
    expect_sum(server, m, range(1, 6), server.finish(), 32)


def test_forged_share_fails_with_data_loss():
    params = secagg.SecAggParams(11, 5, 4, 3, 32, 8.0, 8)
    _, x = grid_inputs(5, 8, 7)
    server, clients = stages_to_inboxes(params, x)
    for c in clients:
        server.receive_masked_chunk(c.index, 0, c.masked_input(server.inbox_for(c.index),
                                                               x[c.index - 1]))
    server.close_masked_input()
    for c in clients[:4]:
        r = c.unmask(server.survivors)
        if c.index == 1:
            v = bytearray(r.shares[0].values)
            v[3] ^= 0x10
            r.shares[0] = secagg.RevealedShare(r.shares[0].owner, r.shares[0].kind, bytes(v))
        server.receive_unmask(r)
    assert error_kind(server.finish) == "data_loss"
    assert server.stage == secagg.FAILED and server.sum is None


def test_client_refuses_tampered_share():
    params = secagg.SecAggParams(12, 5, 4, 3, 32, 8.0, 8)
    _, x = grid_inputs(5, 8, 8)
    server, clients = stages_to_inboxes(params, x)
    inbox = server.inbox_for(1)
    inbox[0] = secagg.EncryptedShare(inbox[0].sender, 1,
                                     inbox[0].ciphertext[:40] + b"\0" + inbox[0].ciphertext[41:])
    assert error_kind(clients[0].masked_input, inbox, x[0]) == "unauthenticated"
    assert clients[0].stage == secagg.FAILED
