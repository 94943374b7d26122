// Command hashicorp is raftnet's interop harness against the real hashicorp/raft (Go), built
// in GOPATH mode from Debian's golang-github-hashicorp-raft-dev (v1.1.2):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o hashicorp-interop ./interop/hashicorp
//
// or, with the build tag raftlatest, against the newest hashicorp/raft (v1.7.x, on
// go-msgpack/v2) in a GOPATH assembled from its sources (tests/golden/hashicorp-latest/README.md):
//
//	GO111MODULE=off GOPATH=/tmp/gopath-latest:/usr/share/gocode \
//	    go build -tags raftlatest -o hashicorp-interop-latest ./interop/hashicorp
//
// What differs between the two generations is in raft_v1.go and raft_latest.go.
//
// Modes:
//
//	golden DIR      write the golden vectors (tests/golden/hashicorp/*.hex, or with raftlatest
//	                tests/golden/hashicorp-latest/*.hex): every request and answer exactly as
//	                NetworkTransport writes them (its encoder, its handle)
//	serve [HOLD_AT] run a NetworkTransport server; print "LISTEN addr", then "RECV ..." for each
//	                request, answered by the rules in respond(); exit when stdin closes. With
//	                HOLD_AT, the HOLD_AT-th request is held unanswered (printing "HOLD"), which
//	                stops the connection, and when stdin closes the process exits at once,
//	                closing nothing: a Go node gone with a client's pipeline in flight
//	client ADDR     call a server at ADDR with the sequence in runClient(), print "RESP ..." for
//	                each answer ("RESP name error=..." for an error answer or a failed call)
//	bulk ADDR       the large exchanges: an AppendEntries of 1,000 entries (bulkEntries), then a
//	                64 MiB InstallSnapshot; "RESP ..." for each, as client does
//	pipeline ADDR [READ]
//	                send 128 AppendEntries on one AppendEntriesPipeline before reading any
//	                answer (every 16th with term 666, which the server refuses), then print
//	                "PIPE i ..." for each completion, in order. With READ, the process exits
//	                after taking READ completions (printing "EXIT"), closing nothing, the rest
//	                of the pipeline in flight: a Go node gone mid-pipeline
//
// tests/hashicorp_interop.rs builds and drives it; tests/hashicorp_golden.rs checks the vectors
// without Go. The canonical request lines (describe), the answer rules (respond) and the
// requests both sides build (pattern, bulkEntries, pipelineRequest) are mirrored there.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"io/ioutil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// NetworkTransport's rpc type bytes (net_transport.go).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hashicorp golden DIR | serve [HOLD_AT] | client ADDR | bulk ADDR | pipeline ADDR [READ]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "golden":
		err = writeGolden(os.Args[2])
	case "serve":
		err = serve(optionalCount(2))
	case "client":
		err = runClient(os.Args[2])
	case "bulk":
		err = runBulk(os.Args[2])
	case "pipeline":
		err = runPipeline(os.Args[2], optionalCount(3))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// optionalCount is the count given as argument i, or 0 without one.
func optionalCount(i int) int {
	if len(os.Args) <= i {
		return 0
	}
	n, err := strconv.Atoi(os.Args[i])
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "not a count: %q\n", os.Args[i])
		os.Exit(2)
	}
	return n
}

// lineWriter prints whole lines to stdout from any goroutine, each flushed at once, so that
// a process that exits abruptly has printed every line before it.
type lineWriter struct {
	mu  sync.Mutex
	out *bufio.Writer
}

func newLineWriter() *lineWriter {
	return &lineWriter{out: bufio.NewWriter(os.Stdout)}
}

func (w *lineWriter) printf(format string, args ...interface{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
	w.out.Flush()
}

// ---- golden vectors ------------------------------------------------------------------------

// vector is one golden vector: its file name (without .hex) and its bytes.
type vector struct {
	name  string
	bytes []byte
}

// request is sendRPC's bytes: the type byte, then the request.
func request(rpcType uint8, req interface{}) []byte {
	return append([]byte{rpcType}, encode(req)...)
}

// answer is handleCommand's bytes: the error string ("" for none), then the response.
func answer(errText string, resp interface{}) []byte {
	return encode(errText, resp)
}

// goldenVectors are the vectors every generation writes, then the generation's own
// (generationVectors).
func goldenVectors() []vector {
	type v = vector
	pv := raft.RPCHeader{ProtocolVersion: 3}
	leader := []byte("cartman")
	return append([]v{
		{"heartbeat", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: pv, Term: 10, Leader: leader})},
		{"append_entries_0", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: pv, Term: 10, Leader: leader, PrevLogEntry: 100, PrevLogTerm: 4,
			Entries: []*raft.Log{}, LeaderCommitIndex: 90})},
		{"append_entries_1", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: pv, Term: 10, Leader: leader, PrevLogEntry: 100, PrevLogTerm: 4,
			Entries:           []*raft.Log{{Index: 101, Term: 4, Type: raft.LogCommand, Data: []byte("hi")}},
			LeaderCommitIndex: 90})},
		{"append_entries_3", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: pv, Term: 300, Leader: leader, PrevLogEntry: 70000, PrevLogTerm: 299,
			Entries: []*raft.Log{
				{Index: 70001, Term: 300, Type: raft.LogNoop},
				{Index: 70002, Term: 300, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte("ext")},
				{Index: 70003, Term: 300, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{0xab}, 40)},
			},
			LeaderCommitIndex: 70000})},
		{"append_entries_response", answer("", &raft.AppendEntriesResponse{
			RPCHeader: pv, Term: 10, LastLog: 101, Success: true})},
		{"append_entries_response_backoff", answer("", &raft.AppendEntriesResponse{
			RPCHeader: pv, Term: 11, LastLog: 4000000000, NoRetryBackoff: true})},
		{"request_vote", request(rpcRequestVote, &raft.RequestVoteRequest{
			RPCHeader: pv, Term: 11, Candidate: []byte("kyle"), LastLogIndex: 5, LastLogTerm: 2,
			LeadershipTransfer: true})},
		{"request_vote_response", answer("", &raft.RequestVoteResponse{
			RPCHeader: pv, Term: 11, Granted: true})},
		{"install_snapshot", request(rpcInstallSnapshot, &raft.InstallSnapshotRequest{
			RPCHeader: pv, SnapshotVersion: 1, Term: 10, Leader: []byte("a"), LastLogIndex: 100,
			LastLogTerm: 9, Configuration: []byte{0x81, 0xa7, 'S', 'e', 'r', 'v', 'e', 'r', 's', 0x90},
			ConfigurationIndex: 3, Size: 1000})},
		{"install_snapshot_response", answer("", &raft.InstallSnapshotResponse{
			Term: 10, Success: true})},
		{"timeout_now", request(rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: pv})},
		{"timeout_now_response", answer("", &raft.TimeoutNowResponse{RPCHeader: pv})},
		{"error", answer("operation not supported with current protocol version", nil)},
	}, generationVectors()...)
}

func writeGolden(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, v := range goldenVectors() {
		var text strings.Builder
		fmt.Fprintf(&text, "# %s NetworkTransport: %s (%d bytes)\n", generation, v.name, len(v.bytes))
		text.WriteString("# written by interop/hashicorp (go run: see its doc); do not edit\n")
		for i := 0; i < len(v.bytes); i += 32 {
			end := i + 32
			if end > len(v.bytes) {
				end = len(v.bytes)
			}
			text.WriteString(hex.EncodeToString(v.bytes[i:end]) + "\n")
		}
		if err := ioutil.WriteFile(filepath.Join(dir, v.name+".hex"), []byte(text.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ---- the canonical lines both sides print and compare --------------------------------------

func b(v []byte) string {
	if v == nil {
		return "nil"
	}
	if len(v) > 64 {
		return fmt.Sprintf("len%d/crc%08x", len(v), crc32.ChecksumIEEE(v))
	}
	return "x" + hex.EncodeToString(v)
}

func describe(cmd interface{}) string {
	switch r := cmd.(type) {
	case *raft.AppendEntriesRequest:
		entries := "nil"
		if r.Entries != nil {
			parts := make([]string, len(r.Entries))
			for i, e := range r.Entries {
				parts[i] = fmt.Sprintf("%d/%d/%d/%s/%s", e.Index, e.Term, e.Type, b(e.Data), b(e.Extensions))
			}
			entries = "[" + strings.Join(parts, " ") + "]"
		}
		return fmt.Sprintf("AppendEntries pv=%d term=%d leader=%s prev=%d/%d commit=%d entries=%s",
			r.ProtocolVersion, r.Term, b(r.Leader), r.PrevLogEntry, r.PrevLogTerm, r.LeaderCommitIndex, entries)
	case *raft.RequestVoteRequest:
		return fmt.Sprintf("RequestVote pv=%d term=%d candidate=%s last=%d/%d transfer=%t",
			r.ProtocolVersion, r.Term, b(r.Candidate), r.LastLogIndex, r.LastLogTerm, r.LeadershipTransfer)
	case *raft.InstallSnapshotRequest:
		return fmt.Sprintf("InstallSnapshot pv=%d version=%d term=%d leader=%s last=%d/%d peers=%s configuration=%s/%d size=%d",
			r.ProtocolVersion, r.SnapshotVersion, r.Term, b(r.Leader), r.LastLogIndex, r.LastLogTerm,
			b(r.Peers), b(r.Configuration), r.ConfigurationIndex, r.Size)
	case *raft.TimeoutNowRequest:
		return fmt.Sprintf("TimeoutNow pv=%d", r.ProtocolVersion)
	}
	return fmt.Sprintf("unknown %T", cmd)
}

// respond answers a request by the harness's rules (mirrored in tests/hashicorp_interop.rs):
// term 666 is refused with an error answer. snapshotCRC and snapshotLen describe the body read
// for an InstallSnapshot.
func respond(cmd interface{}, snapshotCRC uint32, snapshotLen int64) (interface{}, error) {
	pv := raft.RPCHeader{ProtocolVersion: 3}
	switch r := cmd.(type) {
	case *raft.AppendEntriesRequest:
		if r.Term == refusedTerm {
			return nil, fmt.Errorf("append refused: term %d", r.Term)
		}
		return &raft.AppendEntriesResponse{RPCHeader: pv, Term: r.Term,
			LastLog: r.PrevLogEntry + uint64(len(r.Entries)), Success: true,
			NoRetryBackoff: len(r.Entries) == 3}, nil
	case *raft.RequestVoteRequest:
		if r.Term == refusedTerm {
			return nil, fmt.Errorf("vote refused: term %d", r.Term)
		}
		return &raft.RequestVoteResponse{RPCHeader: pv, Term: r.Term, Granted: r.LeadershipTransfer}, nil
	case *raft.InstallSnapshotRequest:
		return &raft.InstallSnapshotResponse{RPCHeader: pv, Term: uint64(snapshotCRC),
			Success: snapshotLen == r.Size}, nil
	case *raft.TimeoutNowRequest:
		return &raft.TimeoutNowResponse{RPCHeader: pv}, nil
	}
	return nil, fmt.Errorf("unexpected command")
}

// refusedTerm is the term whose requests the harness's servers refuse with an error answer.
const refusedTerm = 666

// pattern is the bytes both sides build for a body or an entry's data: byte j is
// ((j+seed)*31 + 7) mod 251 (pattern in tests/hashicorp_interop.rs).
func pattern(size, seed int) []byte {
	body := make([]byte, size)
	for j := range body {
		body[j] = byte(((j+seed)*31 + 7) % 251)
	}
	return body
}

// bulkEntries is the 1,000-entry AppendEntries both sides build (bulk_entries in
// tests/hashicorp_interop.rs), indexes 101 to 1100: every LogType v1.1.2 has, in turn
// (Command, Noop, AddPeerDeprecated, RemovePeerDeprecated, Barrier, Configuration); data nil,
// empty, of 1 MiB, of 70,000 bytes (past go-msgpack's 16-bit lengths) or of up to 299 bytes;
// extensions nil, empty or up to 39 bytes.
func bulkEntries() []*raft.Log {
	entries := make([]*raft.Log, 1000)
	for k := range entries {
		e := &raft.Log{Index: uint64(101 + k), Term: 9, Type: raft.LogType(k % 6)}
		switch {
		case k == 500:
			e.Data = pattern(1<<20, k)
		case k == 501:
			e.Data = pattern(70000, k)
		case k%5 == 0:
		case k%5 == 1:
			e.Data = []byte{}
		default:
			e.Data = pattern(k*37%300, k)
		}
		switch k % 3 {
		case 1:
			e.Extensions = []byte{}
		case 2:
			e.Extensions = pattern(k%40, k)
		}
		entries[k] = e
	}
	return entries
}

// pipelineRequest is the i-th request of a 128-deep pipeline (pipeline_request in
// tests/hashicorp_interop.rs): one entry each, every 16th refused (term 666).
func pipelineRequest(i int, leader []byte) *raft.AppendEntriesRequest {
	term := uint64(9)
	if i%16 == 15 {
		term = refusedTerm
	}
	return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3}, Term: term,
		Leader: leader, PrevLogEntry: uint64(i), PrevLogTerm: 9,
		Entries: []*raft.Log{{Index: uint64(i + 1), Term: 9, Data: []byte{byte(i)}}}}
}

// ---- server ----------------------------------------------------------------------------------

func serve(holdAt int) error {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
	if err != nil {
		return err
	}
	defer trans.Close()
	out := newLineWriter()
	var mu sync.Mutex
	received := 0
	handle := func(rpc raft.RPC) {
		var crc uint32
		var n int64
		if rpc.Reader != nil {
			h := crc32.NewIEEE()
			n, _ = io.Copy(h, rpc.Reader)
			crc = h.Sum32()
		}
		out.printf("RECV %s", describe(rpc.Command))
		mu.Lock()
		received++
		hold := received == holdAt
		mu.Unlock()
		if hold {
			// NetworkTransport reads a connection's next request only after answering this
			// one: the requests behind it stay unread.
			out.printf("HOLD")
			return
		}
		rpc.Respond(respond(rpc.Command, crc, n))
	}
	trans.SetHeartbeatHandler(func(rpc raft.RPC) {
		out.printf("HEARTBEAT")
		handle(rpc)
	})
	out.printf("LISTEN %s", trans.LocalAddr())
	go func() {
		for rpc := range trans.Consumer() {
			handle(rpc)
		}
	}()
	// Until the test closes our stdin (after its last call was answered); every line is
	// printed by then.
	io.Copy(ioutil.Discard, os.Stdin)
	if holdAt > 0 {
		// Gone, as a killed node is: the kernel closes its connections (with a reset where
		// requests are left unread).
		os.Exit(0)
	}
	return nil
}

// ---- clients ---------------------------------------------------------------------------------

// caller makes the client modes' calls to one server and prints each answer as a RESP line.
type caller struct {
	trans  *raft.NetworkTransport
	target raft.ServerAddress
	id     raft.ServerID
	out    *lineWriter
}

func newCaller(addr string) (*caller, error) {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
	if err != nil {
		return nil, err
	}
	return &caller{trans: trans, target: raft.ServerAddress(addr), id: raft.ServerID("rust"),
		out: newLineWriter()}, nil
}

func (c *caller) appendEntries(name string, req *raft.AppendEntriesRequest) {
	var resp raft.AppendEntriesResponse
	if err := c.trans.AppendEntries(c.id, c.target, req, &resp); err != nil {
		c.out.printf("RESP %s error=%q", name, err.Error())
		return
	}
	c.out.printf("RESP %s term=%d lastlog=%d success=%t noretry=%t",
		name, resp.Term, resp.LastLog, resp.Success, resp.NoRetryBackoff)
}

func (c *caller) vote(name string, req *raft.RequestVoteRequest) {
	var resp raft.RequestVoteResponse
	if err := c.trans.RequestVote(c.id, c.target, req, &resp); err != nil {
		c.out.printf("RESP %s error=%q", name, err.Error())
		return
	}
	c.out.printf("RESP %s term=%d granted=%t", name, resp.Term, resp.Granted)
}

// installSnapshot sends a body of size bytes (pattern(size, 0)) after req.
func (c *caller) installSnapshot(name string, req *raft.InstallSnapshotRequest, size int) {
	body := pattern(size, 0)
	req.Size = int64(size)
	var resp raft.InstallSnapshotResponse
	if err := c.trans.InstallSnapshot(c.id, c.target, req, &resp, bytes.NewReader(body)); err != nil {
		c.out.printf("RESP %s error=%q", name, err.Error())
		return
	}
	c.out.printf("RESP %s term=%d success=%t crc=%d", name, resp.Term, resp.Success,
		crc32.ChecksumIEEE(body))
}

var goLeader = []byte("go-leader")

func snapshotRequest() *raft.InstallSnapshotRequest {
	return &raft.InstallSnapshotRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3},
		SnapshotVersion: 1, Term: 6, Leader: goLeader, LastLogIndex: 11, LastLogTerm: 5,
		Configuration: []byte("conf"), ConfigurationIndex: 11}
}

func runClient(addr string) error {
	c, err := newCaller(addr)
	if err != nil {
		return err
	}
	defer c.trans.Close()
	pv := raft.RPCHeader{ProtocolVersion: 3}
	leader := goLeader
	c.appendEntries("heartbeat", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader})
	c.appendEntries("append0", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 7, Entries: []*raft.Log{}})
	c.appendEntries("append1", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 7,
		Entries: []*raft.Log{{Index: 8, Term: 5, Type: raft.LogCommand, Data: []byte("one")}}})
	c.appendEntries("append3", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 8, PrevLogTerm: 5, LeaderCommitIndex: 8,
		Entries: []*raft.Log{
			{Index: 9, Term: 5, Type: raft.LogNoop},
			{Index: 10, Term: 5, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte("ext")},
			{Index: 11, Term: 5, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte("three"), 30)},
		}})
	c.vote("vote", &raft.RequestVoteRequest{RPCHeader: pv, Term: 6, Candidate: []byte("go-cand"),
		LastLogIndex: 11, LastLogTerm: 5, LeadershipTransfer: true})
	var tresp raft.TimeoutNowResponse
	if err := c.trans.TimeoutNow(c.id, c.target, &raft.TimeoutNowRequest{RPCHeader: pv}, &tresp); err != nil {
		c.out.printf("RESP timeout error=%q", err.Error())
	} else {
		c.out.printf("RESP timeout pv=%d", tresp.ProtocolVersion)
	}
	c.installSnapshot("snapshot", snapshotRequest(), 1<<20)
	c.vote("refused", &raft.RequestVoteRequest{RPCHeader: pv, Term: refusedTerm, Candidate: []byte("go-cand")})
	return nil
}

// runBulk makes the large calls: 1,000 entries in one AppendEntries, a 64 MiB snapshot.
func runBulk(addr string) error {
	c, err := newCaller(addr)
	if err != nil {
		return err
	}
	defer c.trans.Close()
	c.appendEntries("append1000", &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3},
		Term: 9, Leader: goLeader, PrevLogEntry: 100, PrevLogTerm: 9, LeaderCommitIndex: 100,
		Entries: bulkEntries()})
	c.installSnapshot("snapshot64", snapshotRequest(), 64<<20)
	return nil
}

// runPipeline sends 128 AppendEntries on one pipeline (one connection) before taking any
// completion, then prints each completion in the order the pipeline hands them out; with
// read > 0, only that many, and then the process exits with the pipeline open.
func runPipeline(addr string, read int) error {
	const depth = 128
	trans, err := newPipelineTransport(depth)
	if err != nil {
		return err
	}
	defer trans.Close()
	pipeline, err := trans.AppendEntriesPipeline(raft.ServerID("rust"), raft.ServerAddress(addr))
	if err != nil {
		return err
	}
	defer pipeline.Close()
	for i := 0; i < depth; i++ {
		if _, err := pipeline.AppendEntries(pipelineRequest(i, goLeader), new(raft.AppendEntriesResponse)); err != nil {
			return err
		}
	}
	out := newLineWriter()
	for i := 0; i < depth; i++ {
		if i == read && read > 0 {
			// Gone without reading the other answers or closing anything: the kernel closes
			// the connection (a reset, with answers unread).
			out.printf("EXIT")
			os.Exit(0)
		}
		future := <-pipeline.Consumer()
		if err := future.Error(); err != nil {
			out.printf("PIPE %d prev=%d error=%q", i, future.Request().PrevLogEntry, err.Error())
			continue
		}
		out.printf("PIPE %d prev=%d lastlog=%d success=%t", i,
			future.Request().PrevLogEntry, future.Response().LastLog, future.Response().Success)
	}
	return nil
}
