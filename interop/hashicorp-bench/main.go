// Command hashicorp-bench is raftnet-bench's Go column: hashicorp/raft's own NetworkTransport
// (v1.1.2, Debian's golang-github-hashicorp-raft-dev) running raftnet-bench's RPC scenarios,
// built in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o hashicorp-bench ./interop/hashicorp-bench
//
// Modes (raftnet-bench's bench/src/go_impl.rs starts and drives them):
//
//	serve                 a NetworkTransport server only; prints "LISTEN addr"
//	client SCENARIO ADDR  a NetworkTransport client driving SCENARIO against the server at ADDR
//	                      (a Go server, or raftnet with the hashicorp codec); prints "READY"
//	pair SCENARIO         both in this process, the client calling the server: Go to Go
//
// Then, on stdin, one command a line: "start" opens the measured window (counters reset, the
// process's getrusage read), "stop" closes it and prints
// "RESULT ops bytes user_us sys_us voluntary involuntary" (the window's operations and payload
// bytes, this process's CPU time and context switches in it) and, for the client modes, "LAT"
// and the latencies in nanoseconds (every op's, up to maxLatencies: then a stride of them).
// The client modes then exit; serve keeps serving windows until stdin closes. A wrong answer or
// a transport error prints "ERROR what" and exits 1.
//
// The server answers as raftnet-bench's other servers do (bench/src/raftnet_impl.rs,
// response()): heartbeats on the fast path (SetHeartbeatHandler, as hashicorp/raft itself sets
// it), everything else through the consumer channel; AppendEntries with the request's term,
// success and the last entry's index (prev_log_entry without entries); votes granted in the
// candidate's term; snapshot bodies checked byte by byte against the pattern of
// bench/src/check.rs before success is answered. The client checks every answer likewise.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// What every scenario's requests carry (bench/src/check.rs).
const (
	term         = 7
	voteTerm     = term + 1
	prevIndex    = 1000
	snapshotSize = 64 << 20
	// The pattern's period and seed (bench/src/check.rs, PERIOD and period()).
	period = 65521
	// Small requests in flight in the pipelined scenarios; with 1 MiB entries
	// (bench/src/scenario.rs, PIPELINE_DEPTH and BULK_PIPELINE_DEPTH). hashicorp/raft v1.1.2's
	// pipeline itself holds up to 128 unanswered (rpcMaxPipeline).
	pipelineDepth     = 128
	bulkPipelineDepth = 8
	// Latencies kept per window; beyond, every n-th.
	maxLatencies = 200000
	// Idle pooled connections per peer (Consul's value) and the I/O deadline of a call.
	maxPool = 3
	timeout = 60 * time.Second
)

var leader = []byte("127.0.0.1:7000")

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch {
	case os.Args[1] == "serve" && len(os.Args) == 2:
		err = serveOnly()
	case os.Args[1] == "client" && len(os.Args) == 4:
		err = runClient(os.Args[2], os.Args[3], nil)
	case os.Args[1] == "pair" && len(os.Args) == 3:
		err = runPair(os.Args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hashicorp-bench serve | client SCENARIO ADDR | pair SCENARIO")
	os.Exit(2)
}

// ---- the pattern ----------------------------------------------------------------------------

func patternPeriod() []byte {
	p := make([]byte, period)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x >> 32)
	}
	return p
}

var thePeriod = patternPeriod()

func snapshotBody() []byte {
	body := make([]byte, snapshotSize)
	for i := 0; i < snapshotSize; i += period {
		copy(body[i:], thePeriod)
	}
	return body
}

// checkBody reads r to its end and checks it against the pattern and the length.
func checkBody(r io.Reader, want int64) error {
	buf := make([]byte, 256<<10)
	var off int64
	var wrong error
	for {
		n, err := r.Read(buf)
		for piece := buf[:n]; len(piece) > 0; {
			at := int(off % period)
			k := len(piece)
			if k > period-at {
				k = period - at
			}
			if wrong == nil && !bytes.Equal(piece[:k], thePeriod[at:at+k]) {
				wrong = fmt.Errorf("snapshot body differs from the pattern near byte %d", off)
			}
			off += int64(k)
			piece = piece[k:]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if wrong != nil {
		return wrong
	}
	if off != want || want != snapshotSize {
		return fmt.Errorf("snapshot body is %d bytes, declared %d, expected %d", off, want, snapshotSize)
	}
	return nil
}

// ---- the measured window --------------------------------------------------------------------

// window is what the load counts: completions count only while it is open.
type window struct {
	open  int32 // atomic: 1 while measuring
	stop  int32 // atomic: 1 once the load must wind down
	start syscall.Rusage
}

func (w *window) measuring() bool { return atomic.LoadInt32(&w.open) == 1 }
func (w *window) stopped() bool   { return atomic.LoadInt32(&w.stop) == 1 }

func rusage() syscall.Rusage {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru
}

func micros(tv syscall.Timeval) int64 { return tv.Sec*1000000 + tv.Usec }

// usageLine is the window's CPU time and switches, "user_us sys_us voluntary involuntary".
func usageLine(a, b syscall.Rusage) string {
	return fmt.Sprintf("%d %d %d %d", micros(b.Utime)-micros(a.Utime), micros(b.Stime)-micros(a.Stime),
		b.Nvcsw-a.Nvcsw, b.Nivcsw-a.Nivcsw)
}

// counter is one load goroutine's completions in the window.
type counter struct {
	ops, bytes int64
	lat        []int64
}

func (c *counter) record(w *window, since time.Time, payload int64) {
	if w.measuring() {
		c.ops++
		c.bytes += payload
		c.lat = append(c.lat, int64(time.Since(since)))
	}
}

// ---- server ---------------------------------------------------------------------------------

func newTransport() (*raft.NetworkTransport, error) {
	return raft.NewTCPTransport("127.0.0.1:0", nil, maxPool, timeout, ioutil.Discard)
}

func respond(rpc raft.RPC) {
	pv := raft.RPCHeader{ProtocolVersion: 3}
	switch r := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		last := r.PrevLogEntry
		if n := len(r.Entries); n > 0 {
			last = r.Entries[n-1].Index
		}
		rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: pv, Term: r.Term, LastLog: last, Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{RPCHeader: pv, Term: r.Term, Granted: true}, nil)
	case *raft.InstallSnapshotRequest:
		err := checkBody(rpc.Reader, r.Size)
		if err != nil {
			fmt.Fprintln(os.Stderr, "hashicorp-bench:", err)
		}
		rpc.Respond(&raft.InstallSnapshotResponse{RPCHeader: pv, Term: r.Term, Success: err == nil}, nil)
	default:
		rpc.Respond(nil, fmt.Errorf("unexpected command %T", rpc.Command))
	}
}

func startServer() (*raft.NetworkTransport, error) {
	trans, err := newTransport()
	if err != nil {
		return nil, err
	}
	trans.SetHeartbeatHandler(respond)
	go func() {
		for rpc := range trans.Consumer() {
			respond(rpc)
		}
	}()
	return trans, nil
}

// serveOnly serves until stdin closes, reporting the process's usage for each window.
func serveOnly() error {
	trans, err := startServer()
	if err != nil {
		return err
	}
	defer trans.Close()
	fmt.Printf("LISTEN %s\n", trans.LocalAddr())
	in := bufio.NewScanner(os.Stdin)
	var start syscall.Rusage
	for in.Scan() {
		switch in.Text() {
		case "start":
			start = rusage()
		case "stop":
			fmt.Printf("RESULT 0 0 %s\n", usageLine(start, rusage()))
		}
	}
	return nil
}

func runPair(scenario string) error {
	trans, err := startServer()
	if err != nil {
		return err
	}
	defer trans.Close()
	return runClient(scenario, string(trans.LocalAddr()), trans)
}

// ---- client ---------------------------------------------------------------------------------

func appendRequest(entries, size int) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3}, Term: term, Leader: leader}
	if entries == 0 {
		return req // a heartbeat
	}
	req.PrevLogEntry, req.PrevLogTerm, req.LeaderCommitIndex = prevIndex, term, prevIndex-1
	data := bytes.Repeat([]byte{0x5a}, size)
	for i := 0; i < entries; i++ {
		req.Entries = append(req.Entries, &raft.Log{Index: prevIndex + 1 + uint64(i), Term: term,
			Type: raft.LogCommand, Data: data})
	}
	return req
}

func checkAppend(resp *raft.AppendEntriesResponse, entries int) error {
	want := uint64(0)
	if entries > 0 {
		want = prevIndex + uint64(entries)
	}
	if resp.Term != term || !resp.Success || resp.LastLog != want {
		return fmt.Errorf("wrong answer: AppendEntries(term %d, success %t, last_log %d), expected last_log %d",
			resp.Term, resp.Success, resp.LastLog, want)
	}
	return nil
}

// runClient drives scenario against addr until "stop" (local: the pair's own server).
func runClient(scenario, addr string, local *raft.NetworkTransport) error {
	trans, err := newTransport()
	if err != nil {
		return err
	}
	defer trans.Close()
	target := raft.ServerAddress(addr)
	id := raft.ServerID("server")
	w := &window{}
	var load func(c *counter) error
	switch scenario {
	case "heartbeat-seq", "append-100b-seq":
		entries, size := 0, 0
		if scenario == "append-100b-seq" {
			entries, size = 1, 100
		}
		req := appendRequest(entries, size)
		load = func(c *counter) error {
			for !w.stopped() {
				var resp raft.AppendEntriesResponse
				t := time.Now()
				if err := trans.AppendEntries(id, target, req, &resp); err != nil {
					return err
				}
				if err := checkAppend(&resp, entries); err != nil {
					return err
				}
				c.record(w, t, int64(size))
			}
			return nil
		}
	case "vote-seq":
		req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3}, Term: voteTerm,
			Candidate: leader, LastLogIndex: prevIndex, LastLogTerm: term}
		load = func(c *counter) error {
			for !w.stopped() {
				var resp raft.RequestVoteResponse
				t := time.Now()
				if err := trans.RequestVote(id, target, req, &resp); err != nil {
					return err
				}
				if resp.Term != voteTerm || !resp.Granted {
					return fmt.Errorf("wrong answer: RequestVote(term %d, granted %t)", resp.Term, resp.Granted)
				}
				c.record(w, t, 0)
			}
			return nil
		}
	case "heartbeat-pipelined", "append-64x1k-pipelined", "append-1m-pipelined":
		entries, size, depth := 0, 0, pipelineDepth
		if scenario == "append-64x1k-pipelined" {
			entries, size = 64, 1024
		} else if scenario == "append-1m-pipelined" {
			entries, size, depth = 1, 1<<20, bulkPipelineDepth
		}
		req := appendRequest(entries, size)
		load = func(c *counter) error { return pipelined(trans, id, target, w, c, req, entries, size, depth) }
	case "snapshot-64m":
		body := snapshotBody()
		load = func(c *counter) error {
			for !w.stopped() {
				req := &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3},
					SnapshotVersion: 1, Term: term, Leader: leader, LastLogIndex: prevIndex,
					LastLogTerm: term, Size: snapshotSize}
				var resp raft.InstallSnapshotResponse
				t := time.Now()
				if err := trans.InstallSnapshot(id, target, req, &resp, bytes.NewReader(body)); err != nil {
					return err
				}
				if resp.Term != term || !resp.Success {
					return fmt.Errorf("wrong answer: InstallSnapshot(term %d, success %t)", resp.Term, resp.Success)
				}
				c.record(w, t, snapshotSize)
			}
			return nil
		}
	default:
		return fmt.Errorf("no Go run of scenario %q", scenario)
	}

	c := &counter{}
	done := make(chan error, 1)
	go func() { done <- load(c) }()
	fmt.Println("READY")
	commands := make(chan string)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			commands <- in.Text()
		}
		close(commands)
	}()
	for {
		select {
		case err := <-done:
			if err == nil {
				err = fmt.Errorf("the load ended before it was stopped")
			}
			return err
		case cmd, ok := <-commands:
			if !ok {
				return nil // raftnet-bench went away
			}
			switch cmd {
			case "start":
				w.start = rusage()
				atomic.StoreInt32(&w.open, 1)
			case "stop":
				atomic.StoreInt32(&w.open, 0)
				end := rusage()
				atomic.StoreInt32(&w.stop, 1)
				if err := <-done; err != nil {
					return err
				}
				report(c, usageLine(w.start, end))
				return nil
			}
		}
	}
}

// pipelined keeps depth appends in flight on one AppendEntriesPipeline: a sender (blocking in
// the pipeline when it is full, as Raft's replication does) and this goroutine taking the
// completions in order.
func pipelined(trans *raft.NetworkTransport, id raft.ServerID, target raft.ServerAddress, w *window,
	c *counter, req *raft.AppendEntriesRequest, entries, size, depth int) error {
	pipe, err := trans.AppendEntriesPipeline(id, target)
	if err != nil {
		return err
	}
	defer pipe.Close()
	slots := make(chan struct{}, depth)
	sendErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !w.stopped() {
			slots <- struct{}{}
			if _, err := pipe.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	payload := int64(entries * size)
	inFlight := func() int { return len(slots) }
	for {
		select {
		case err := <-sendErr:
			if err != nil {
				return err
			}
			// The sender stopped: take what is still in flight.
			for inFlight() > 0 {
				if err := complete(<-pipe.Consumer(), w, c, entries, payload, slots); err != nil {
					return err
				}
			}
			wg.Wait()
			return nil
		case f := <-pipe.Consumer():
			if err := complete(f, w, c, entries, payload, slots); err != nil {
				return err
			}
		}
	}
}

func complete(f raft.AppendFuture, w *window, c *counter, entries int, payload int64, slots chan struct{}) error {
	<-slots
	if err := f.Error(); err != nil {
		return err
	}
	if err := checkAppend(f.Response(), entries); err != nil {
		return err
	}
	c.record(w, f.Start(), payload)
	return nil
}

func report(c *counter, usage string) {
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	fmt.Fprintf(out, "RESULT %d %d %s\nLAT", c.ops, c.bytes, usage)
	stride := len(c.lat)/maxLatencies + 1
	for i := 0; i < len(c.lat); i += stride {
		fmt.Fprintf(out, " %d", c.lat[i])
	}
	fmt.Fprintln(out)
}
