from node.budget import Budget, Limits

LIMITS = Limits(max_requests=3, max_bytes=100, total_bytes=150, max_remotes=2, max_refusals=2)


def test_requests_beyond_the_cap_are_refused_and_counted():
    b = Budget(LIMITS)
    tickets = [b.admit("a") for _ in range(3)]
    assert all(tickets)
    assert b.admit("a") is None and b.admit("a") is None
    assert b.abusive("a")
    b.release(tickets[0])
    assert b.admit("a") is not None and not b.abusive("a")


def test_bytes_are_capped_per_remote_and_in_total_but_one_block_always_fits():
    freed = []
    b = Budget(LIMITS, on_free=lambda: freed.append(1))
    a1, a2 = b.admit("a"), b.admit("a")
    assert b.claim(a1, 250)                     # holding nothing: one block always fits
    assert not b.claim(a2, 10)                  # over a's cap
    c1, c2 = b.admit("c"), b.admit("c")
    assert b.claim(c1, 40)                      # over the total, but c holds nothing: a newcomer is not starved
    assert not b.claim(c2, 40)                  # beyond its fair share (150 / 2) while over the total
    b.release(c1)
    b.release(a1)
    assert freed and b.usage("a") == (1, 0) and b.total_bytes == 0
    assert b.claim(a2, 90) and b.usage("a") == (1, 90)


def test_remotes_are_capped_and_forget_voids_old_tickets():
    b = Budget(LIMITS)
    a, c = b.admit("a"), b.admit("c")
    assert b.admit("d") is None                 # max_remotes
    assert b.claim(a, 50)
    b.forget("a")
    assert b.total_bytes == 0 and b.usage("a") == (0, 0)
    again = b.admit("a")
    b.release(a)                                # a void ticket never touches the new record
    assert b.usage("a") == (1, 0)
    b.release(again)
    b.release(again)                            # idempotent
    assert b.usage("a") == (0, 0) and "a" not in b.remotes
    b.release(c)
    assert not b.remotes
