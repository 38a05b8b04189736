"""node/peer/jobs.py: a file being hashed on a check thread is held, so a remove meanwhile
cannot close (and free for reuse) the descriptors the thread reads through."""
from types import SimpleNamespace

from node.peer.jobs import Jobs


class File:
    def __init__(self):
        self.holds, self.seen = 0, None

    def hold(self):
        self.holds += 1

    def release(self):
        self.holds -= 1

    def recheck(self, trusted, add, stop):
        self.seen = self.holds
        return "bits"


def test_the_check_thread_hashes_a_held_file_and_releases_it():
    checks = []
    host = SimpleNamespace(disk=SimpleNamespace(check=lambda work, done: checks.append((work, done))))
    holdings = SimpleNamespace(current=lambda h: False)       # removed while it hashed
    jobs = Jobs(host, holdings, integrity=None, direct_io=False)
    f = File()
    h = SimpleNamespace(file=f, hashing=SimpleNamespace(add=lambda n: None))
    jobs._hash(h, None, then=lambda h, have: None)
    assert f.holds == 1                                        # held before the thread has it
    work, done = checks.pop()
    assert work() == "bits" and f.seen == 1 and f.holds == 0
    done("bits", None)
    assert f.holds == 0
