// Command hashicorp-cluster runs a 3-node hashicorp/raft cluster (Debian's v1.1.2, GOPATH mode)
// on loopback, for examples/go_interop.rs, where a raftnet node joins it as a non-voter:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o hashicorp-cluster ./interop/hashicorp-cluster
//	hashicorp-cluster N
//
// It starts three real raft.Raft nodes (in-memory stores, TCP NetworkTransports on
// 127.0.0.1:0), bootstraps them, waits for a leader and prints "LEADER id addr". Then it reads
// one line "ID ADDR" from stdin, adds that server as a non-voter (printing "ADDED id index"),
// applies N commands "command 1" .. "command N" (printing "APPLIED i index" for each) and
// waits for stdin to close (the joiner has them all), then shuts the nodes down and exits 0.
// Raft's own logs (warnings and errors) go to stderr until the shutdown.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// fsm keeps nothing: the demo is about what is replicated, not applied.
type fsm struct{}

func (fsm) Apply(*raft.Log) interface{}         { return nil }
func (fsm) Snapshot() (raft.FSMSnapshot, error) { return snapshot{}, nil }
func (fsm) Restore(r io.ReadCloser) error       { return r.Close() }

type snapshot struct{}

func (snapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (snapshot) Release()                             {}

// logs passes raft's and the transports' logs to stderr until the cluster shuts down, when
// each node's closing connections would be logged as errors by the others.
type logs struct{ muted int32 }

func (l *logs) Write(p []byte) (int, error) {
	if atomic.LoadInt32(&l.muted) == 1 {
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "hashicorp-cluster: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: hashicorp-cluster N")
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 1 {
		fail("N must be a positive number, not %q", os.Args[1])
	}

	stderr := &logs{}
	var transports []*raft.NetworkTransport
	var servers []raft.Server
	for i := 1; i <= 3; i++ {
		t, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, stderr)
		if err != nil {
			fail("transport: %v", err)
		}
		transports = append(transports, t)
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("go%d", i)),
			Address: t.LocalAddr(),
		})
	}
	var nodes []*raft.Raft
	for i, t := range transports {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.LogOutput = stderr
		conf.LogLevel = "WARN"
		store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		configuration := raft.Configuration{Servers: servers}
		if err := raft.BootstrapCluster(conf, store, store, snaps, t, configuration); err != nil {
			fail("bootstrap: %v", err)
		}
		r, err := raft.NewRaft(conf, fsm{}, store, store, snaps, t)
		if err != nil {
			fail("raft: %v", err)
		}
		nodes = append(nodes, r)
	}

	leader := waitForLeader(nodes)
	fmt.Printf("LEADER %s %s\n", leaderID(nodes, servers, leader), leader.Leader())

	stdin := bufio.NewScanner(os.Stdin)
	if !stdin.Scan() {
		fail("stdin closed before the joiner's \"ID ADDR\" line")
	}
	joiner := strings.Fields(stdin.Text())
	if len(joiner) != 2 {
		fail("want \"ID ADDR\", got %q", stdin.Text())
	}
	id, addr := raft.ServerID(joiner[0]), raft.ServerAddress(joiner[1])
	// A leader can change under a busy machine: each step retries on the current leader.
	index := retry(nodes, func(r *raft.Raft) raft.IndexFuture {
		return r.AddNonvoter(id, addr, 0, 10*time.Second)
	})
	fmt.Printf("ADDED %s %d\n", id, index)
	for i := 1; i <= n; i++ {
		command := []byte(fmt.Sprintf("command %d", i))
		index := retry(nodes, func(r *raft.Raft) raft.IndexFuture {
			return r.Apply(command, 10*time.Second)
		})
		fmt.Printf("APPLIED %d %d\n", i, index)
	}

	// The joiner closes stdin once it holds every command.
	for stdin.Scan() {
	}
	atomic.StoreInt32(&stderr.muted, 1)
	for _, r := range nodes {
		r.Shutdown().Error()
	}
	for _, t := range transports {
		t.Close()
	}
}

// waitForLeader returns the node that is leader, once there is one.
func waitForLeader(nodes []*raft.Raft) *raft.Raft {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range nodes {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	fail("no leader within 30 s")
	return nil
}

func leaderID(nodes []*raft.Raft, servers []raft.Server, leader *raft.Raft) raft.ServerID {
	for i, r := range nodes {
		if r == leader {
			return servers[i].ID
		}
	}
	return ""
}

// retry runs op on the leader until it succeeds (a lost leadership is retried on the next
// leader, for up to 30 s); the index of the entry it wrote.
func retry(nodes []*raft.Raft, op func(*raft.Raft) raft.IndexFuture) uint64 {
	deadline := time.Now().Add(30 * time.Second)
	for {
		future := op(waitForLeader(nodes))
		err := future.Error()
		if err == nil {
			return future.Index()
		}
		if time.Now().After(deadline) {
			fail("%v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
