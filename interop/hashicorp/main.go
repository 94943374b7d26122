// Command hashicorp is raftnet's interop harness against the real hashicorp/raft (Go), built
// in GOPATH mode from Debian's golang-github-hashicorp-raft-dev (v1.1.2):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o hashicorp-interop ./interop/hashicorp
//
// Modes:
//
//	golden DIR    write the golden vectors (tests/golden/hashicorp/*.hex): every request and
//	              answer exactly as NetworkTransport writes them (its encoder, its handle)
//	serve         run a NetworkTransport server; print "LISTEN addr", then "RECV ..." for each
//	              request, answered by the rules in answer(); exit when stdin closes
//	client ADDR   call a server at ADDR with the sequence in runClient(), print "RESP ..." for
//	              each answer; exit status 1 on a transport error
//	pipeline ADDR send 128 AppendEntries on one AppendEntriesPipeline before reading any
//	              answer, then print "PIPE i lastlog=..." for each completion, in order
//
// tests/hashicorp_interop.rs builds and drives it; tests/hashicorp_golden.rs checks the vectors
// without Go. The canonical request lines (describe) and the answer rules are mirrored there.
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
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
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
		fmt.Fprintln(os.Stderr, "usage: hashicorp golden DIR | serve | client ADDR")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "golden":
		err = writeGolden(os.Args[2])
	case "serve":
		err = serve()
	case "client":
		err = runClient(os.Args[2])
	case "pipeline":
		err = runPipeline(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// ---- golden vectors ------------------------------------------------------------------------

// encode writes values as NetworkTransport's conn encoder does (codec.MsgpackHandle{}).
func encode(values ...interface{}) []byte {
	var buf bytes.Buffer
	enc := codec.NewEncoder(&buf, &codec.MsgpackHandle{})
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

// request is sendRPC's bytes: the type byte, then the request.
func request(rpcType uint8, req interface{}) []byte {
	return append([]byte{rpcType}, encode(req)...)
}

// answer is handleCommand's bytes: the error string ("" for none), then the response.
func answer(errText string, resp interface{}) []byte {
	return encode(errText, resp)
}

func goldenVectors() []struct {
	name  string
	bytes []byte
} {
	type v = struct {
		name  string
		bytes []byte
	}
	pv := raft.RPCHeader{ProtocolVersion: 3}
	leader := []byte("cartman")
	return []v{
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
	}
}

func writeGolden(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, v := range goldenVectors() {
		var text strings.Builder
		fmt.Fprintf(&text, "# hashicorp/raft v1.1.2 NetworkTransport: %s (%d bytes)\n", v.name, len(v.bytes))
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

// respond answers a request by the harness's rules (mirrored in tests/hashicorp_interop.rs).
// snapshotCRC and snapshotLen describe the body read for an InstallSnapshot.
func respond(cmd interface{}, snapshotCRC uint32, snapshotLen int64) (interface{}, error) {
	pv := raft.RPCHeader{ProtocolVersion: 3}
	switch r := cmd.(type) {
	case *raft.AppendEntriesRequest:
		return &raft.AppendEntriesResponse{RPCHeader: pv, Term: r.Term,
			LastLog: r.PrevLogEntry + uint64(len(r.Entries)), Success: true,
			NoRetryBackoff: len(r.Entries) == 3}, nil
	case *raft.RequestVoteRequest:
		if r.Term == 666 {
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

// ---- server ----------------------------------------------------------------------------------

func serve() error {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
	if err != nil {
		return err
	}
	defer trans.Close()
	out := bufio.NewWriter(os.Stdout)
	lines := make(chan string, 1024)
	handle := func(rpc raft.RPC) {
		var crc uint32
		var n int64
		if rpc.Reader != nil {
			h := crc32.NewIEEE()
			n, _ = io.Copy(h, rpc.Reader)
			crc = h.Sum32()
		}
		lines <- "RECV " + describe(rpc.Command)
		rpc.Respond(respond(rpc.Command, crc, n))
	}
	trans.SetHeartbeatHandler(func(rpc raft.RPC) {
		lines <- "HEARTBEAT"
		handle(rpc)
	})
	fmt.Fprintf(out, "LISTEN %s\n", trans.LocalAddr())
	out.Flush()
	go func() {
		for rpc := range trans.Consumer() {
			handle(rpc)
		}
	}()
	printed := make(chan struct{})
	go func() {
		for line := range lines {
			fmt.Fprintln(out, line)
			out.Flush()
		}
		close(printed)
	}()
	// Until the test closes our stdin (after its last call was answered): then every line is
	// printed before the process ends.
	io.Copy(ioutil.Discard, os.Stdin)
	close(lines)
	<-printed
	return nil
}

// ---- client ----------------------------------------------------------------------------------

// SnapshotBody is the InstallSnapshot body both sides build: byte i is (i*31 + 7) mod 251.
func snapshotBody(size int) []byte {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte((i*31 + 7) % 251)
	}
	return body
}

func runClient(addr string) error {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
	if err != nil {
		return err
	}
	defer trans.Close()
	target := raft.ServerAddress(addr)
	id := raft.ServerID("rust")
	pv := raft.RPCHeader{ProtocolVersion: 3}
	leader := []byte("go-leader")
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	appendEntries := func(name string, req *raft.AppendEntriesRequest) {
		var resp raft.AppendEntriesResponse
		if err := trans.AppendEntries(id, target, req, &resp); err != nil {
			fmt.Fprintf(out, "RESP %s error=%q\n", name, err.Error())
			return
		}
		fmt.Fprintf(out, "RESP %s term=%d lastlog=%d success=%t noretry=%t\n",
			name, resp.Term, resp.LastLog, resp.Success, resp.NoRetryBackoff)
	}
	appendEntries("heartbeat", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader})
	appendEntries("append0", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 7, Entries: []*raft.Log{}})
	appendEntries("append1", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 7,
		Entries: []*raft.Log{{Index: 8, Term: 5, Type: raft.LogCommand, Data: []byte("one")}}})
	appendEntries("append3", &raft.AppendEntriesRequest{RPCHeader: pv, Term: 5, Leader: leader,
		PrevLogEntry: 8, PrevLogTerm: 5, LeaderCommitIndex: 8,
		Entries: []*raft.Log{
			{Index: 9, Term: 5, Type: raft.LogNoop},
			{Index: 10, Term: 5, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte("ext")},
			{Index: 11, Term: 5, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte("three"), 30)},
		}})
	vote := func(name string, req *raft.RequestVoteRequest) {
		var resp raft.RequestVoteResponse
		if err := trans.RequestVote(id, target, req, &resp); err != nil {
			fmt.Fprintf(out, "RESP %s error=%q\n", name, err.Error())
			return
		}
		fmt.Fprintf(out, "RESP %s term=%d granted=%t\n", name, resp.Term, resp.Granted)
	}
	vote("vote", &raft.RequestVoteRequest{RPCHeader: pv, Term: 6, Candidate: []byte("go-cand"),
		LastLogIndex: 11, LastLogTerm: 5, LeadershipTransfer: true})
	var tresp raft.TimeoutNowResponse
	if err := trans.TimeoutNow(id, target, &raft.TimeoutNowRequest{RPCHeader: pv}, &tresp); err != nil {
		fmt.Fprintf(out, "RESP timeout error=%q\n", err.Error())
	} else {
		fmt.Fprintf(out, "RESP timeout pv=%d\n", tresp.ProtocolVersion)
	}
	body := snapshotBody(1 << 20)
	var sresp raft.InstallSnapshotResponse
	sreq := &raft.InstallSnapshotRequest{RPCHeader: pv, SnapshotVersion: 1, Term: 6,
		Leader: leader, LastLogIndex: 11, LastLogTerm: 5, Configuration: []byte("conf"),
		ConfigurationIndex: 11, Size: int64(len(body))}
	if err := trans.InstallSnapshot(id, target, sreq, &sresp, bytes.NewReader(body)); err != nil {
		fmt.Fprintf(out, "RESP snapshot error=%q\n", err.Error())
	} else {
		fmt.Fprintf(out, "RESP snapshot term=%d success=%t crc=%d\n", sresp.Term, sresp.Success,
			crc32.ChecksumIEEE(body))
	}
	vote("refused", &raft.RequestVoteRequest{RPCHeader: pv, Term: 666, Candidate: []byte("go-cand")})
	return nil
}

// runPipeline sends 128 AppendEntries on one pipeline (one connection) before taking any
// completion, then prints each completion in the order the pipeline hands them out.
func runPipeline(addr string) error {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
	if err != nil {
		return err
	}
	defer trans.Close()
	pipeline, err := trans.AppendEntriesPipeline(raft.ServerID("rust"), raft.ServerAddress(addr))
	if err != nil {
		return err
	}
	defer pipeline.Close()
	const depth = 128
	for i := 0; i < depth; i++ {
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3}, Term: 9,
			Leader: []byte("go-leader"), PrevLogEntry: uint64(i), PrevLogTerm: 9,
			Entries: []*raft.Log{{Index: uint64(i + 1), Term: 9, Data: []byte{byte(i)}}}}
		if _, err := pipeline.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			return err
		}
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := 0; i < depth; i++ {
		future := <-pipeline.Consumer()
		if err := future.Error(); err != nil {
			return err
		}
		fmt.Fprintf(out, "PIPE %d prev=%d lastlog=%d success=%t\n", i,
			future.Request().PrevLogEntry, future.Response().LastLog, future.Response().Success)
	}
	return nil
}
