"""Test hosts: network namespaces that play separate machines, for tests of a cluster (inspect
and control across hosts, partitions, slow links).

Each host is a network namespace with its loopback, one veth pair to the root namespace (a /30
of a private /24 picked per run that overlaps nothing on the machine), its own host name
(`host0`, `host1`, ... as `socket.gethostname()` sees it) and its own FORKQ_CONTROL_DIR. The
shared Redis and RabbitMQ listen on 127.0.0.1 only, which a host cannot reach: each host gets
a link to each, a TCP proxy (link.py) in the test process listening on the root side of its
veth, which also plays the network's faults. Needs root and iproute2; without them the tests
are skipped, with CI=true they fail. The kernel here has no netem qdisc and no traffic
classifier, so delay and loss are the proxy's; a partition is in the neighbour entries.

Use from a test (the `cluster` fixture is in tests/conftest.py):

    def test_two_hosts(cluster, e2e_dir):
        a, b = cluster(2)                      # hosts with links to 127.0.0.1:6379 and :5672
        url = redis_test_url()                 # the root namespace's URL, as usual
        worker = a.worker(e2e_dir, a.reach(url), "-c", "1")  # forkq worker inside host0
        client = Forkq("e2e", broker=url)      # the test sends from the root namespace
        wait_until_serving(client, worker)     # a HostProcess works where a WorkerProcess does
        a.partition()                          # host0 cut off: its packets go nowhere
        a.heal()                               # back; returns once packets pass again
        b.redis.delay(100)                     # 100 ms each way on host1's link to Redis
        b.amqp.blackhole(Direction.DOWN)       # RabbitMQ's replies to host1 are held
        b.amqp.cut()                           # host1's AMQP connections reset

Host:
- `name`, `address` (its own: the root namespace reaches servers it runs there), `gateway`
  (the root side: where its links listen), `namespace`, `directory` (its own files).
- `redis_url(db=15, **params)`, `amqp_url(**params)`: the shared servers through its links;
  `reach(url)` rewrites any 127.0.0.1 URL to go through the host's link to that port, keeping
  user, path and query (the key prefix of `redis_test_url()`, say).
- `forward(port, target="127.0.0.1")` adds a link (to a private redis-server of the test, for
  one that must be cut apart from the broker); `link(port)`, `redis`, `amqp`, `links`.
- `run(argv, timeout=30)` -> CompletedProcess (text, captured); `python(code)` runs the venv's
  Python; `forkq(app_dir, *args)` runs the CLI (`inspect`, `control`, ...) from the host;
  `spawn(argv, stdin=False)` -> HostProcess (output collected: `log()`,
  `wait_for_log(text)`, `write(line)`, `signal()`, `wait()`, `stop()`); `worker(app_dir,
  broker, *args, backend=None, app="e2eapp")` is `forkq worker` in the host. All are killed
  when the host is removed; what they start is killed with the namespace.
- `partition()` / `heal()`: nothing passes between the host and the rest, either way, all
  services at once, silently (no reset, no ICMP: connects and reads time out, from the host
  and to it); heal also heals its links. `delay(ms)` on every link.

Link (one service, one host): `delay(ms, direction)`, `loss(fraction, stall_ms=200)` (a lost
segment's cost: the bytes after it wait one retransmission timeout), `blackhole(direction)`
(nothing forwarded that way, nothing closed: a one-way or two-way partition of that service
only), `heal()`, `cut()` (RST both sides of every open connection), `connections`,
`accepted`. Directions: `Direction.UP` (host to server), `DOWN`, `BOTH` (the default).

A server a host runs (a worker's metrics port, say) listens on `host.address`; the test, in
the root namespace, reaches it there, and every port is free inside a fresh host. Hosts do
not reach each other (the machine does not forward between them): what they share is reached
through links. A second Redis that can fail apart from the broker (a result backend, say) is
a private redis-server on 127.0.0.1 with `host.forward(its_port)` on each host.

Outside pytest: `with Cluster(2, directory) as hosts: ...`. Removal kills the processes in
each namespace, deletes the veth pairs, then the namespaces; a namespace of a run that died
(named forkqtest-<pid>-<start time>-...) is removed by the next run, one of a live run never.
"""

from tests.hosts.host import Cluster, Host
from tests.hosts.link import Direction, Link
from tests.hosts.netns import NetnsError
from tests.hosts.process import HostProcess

__all__ = ["Cluster", "Direction", "Host", "HostProcess", "Link", "NetnsError"]
