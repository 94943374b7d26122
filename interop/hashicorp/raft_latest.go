//go:build raftlatest
// +build raftlatest

// What the harness needs of the newest hashicorp/raft (v1.7.x), on go-msgpack/v2: built with
// -tags raftlatest in a GOPATH assembled from sources (tests/golden/hashicorp-latest/README.md).

package main

import (
	"bytes"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// generation names the library in the golden vectors' first lines.
const generation = "hashicorp/raft v1.7.3+ (go-msgpack v2.1.5)"

// rpcRequestPreVote is NetworkTransport's rpc type byte for RequestPreVote (v1.7.0+).
const rpcRequestPreVote uint8 = 4

// encode writes values as NetworkTransport's conn encoder does: codec.MsgpackHandle{} with
// TimeNotBuiltin = !MsgpackUseNewTimeFormat, which is off by default (net_transport.go).
func encode(values ...interface{}) []byte {
	var buf bytes.Buffer
	mp := &codec.MsgpackHandle{}
	mp.TimeNotBuiltin = true
	enc := codec.NewEncoder(&buf, mp)
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

// generationVectors are the golden vectors of what v1.1.2 lacks: RPCHeader's ID and Addr (as
// Raft fills them), Log.AppendedAt, RequestPreVote, and signed integers above 127 (go-msgpack/v2
// writes them with signed markers).
func generationVectors() []vector {
	type v = vector
	h := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n1"), Addr: []byte("cartman")}
	h2 := raft.RPCHeader{ProtocolVersion: 3, ID: []byte("n2"), Addr: []byte("kenny")}
	leader := []byte("cartman")
	at := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	return []v{
		{"ids_heartbeat", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: h, Term: 10, Leader: leader})},
		{"ids_append_entries_appended_at", request(rpcAppendEntries, &raft.AppendEntriesRequest{
			RPCHeader: h, Term: 10, Leader: leader, PrevLogEntry: 100, PrevLogTerm: 4,
			Entries: []*raft.Log{
				// UTC (zone offset -1), a local zone of offset 0 (what time.Now() gives on a
				// UTC host), a zone east and one west of UTC, one whose offset is not whole
				// minutes (MarshalBinary's version 2), and a time before 1970.
				{Index: 101, Term: 4, Type: raft.LogCommand, Data: []byte("hi"), AppendedAt: at},
				{Index: 102, Term: 4, Type: raft.LogCommand, Data: []byte{},
					AppendedAt: at.In(time.FixedZone("Local", 0))},
				{Index: 103, Term: 4, Type: raft.LogNoop,
					AppendedAt: at.In(time.FixedZone("IST", 5*3600+30*60))},
				{Index: 104, Term: 4, Type: raft.LogBarrier, Extensions: []byte("ext"),
					AppendedAt: time.Date(2026, 12, 2, 13, 0, 0, 999999999, time.FixedZone("PST", -8*3600))},
				{Index: 105, Term: 4, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{0xcd}, 3),
					AppendedAt: time.Date(1883, 11, 18, 12, 3, 58, 0, time.FixedZone("LMT", -(4*3600+56*60+2)))},
				{Index: 106, Term: 4, Type: raft.LogCommand,
					AppendedAt: time.Date(1969, 12, 31, 23, 59, 59, 500000000, time.UTC)},
			},
			LeaderCommitIndex: 90})},
		{"ids_append_entries_response", answer("", &raft.AppendEntriesResponse{
			RPCHeader: h2, Term: 10, LastLog: 106, Success: true})},
		{"ids_request_vote", request(rpcRequestVote, &raft.RequestVoteRequest{
			RPCHeader: h, Term: 11, Candidate: leader, LastLogIndex: 5, LastLogTerm: 2})},
		{"ids_request_vote_response", answer("", &raft.RequestVoteResponse{
			RPCHeader: h2, Term: 11, Granted: true})},
		{"request_pre_vote", request(rpcRequestPreVote, &raft.RequestPreVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: 3}, Term: 11, LastLogIndex: 5, LastLogTerm: 2})},
		{"ids_request_pre_vote", request(rpcRequestPreVote, &raft.RequestPreVoteRequest{
			RPCHeader: h, Term: 12, LastLogIndex: 70000, LastLogTerm: 300})},
		{"request_pre_vote_response", answer("", &raft.RequestPreVoteResponse{
			RPCHeader: h2, Term: 12, Granted: false})},
		{"ids_install_snapshot", request(rpcInstallSnapshot, &raft.InstallSnapshotRequest{
			RPCHeader: h, SnapshotVersion: 1, Term: 10, Leader: leader, LastLogIndex: 100,
			LastLogTerm: 9, Configuration: []byte{0x81, 0xa7, 'S', 'e', 'r', 'v', 'e', 'r', 's', 0x90},
			ConfigurationIndex: 3, Size: 200})},
		{"ids_timeout_now", request(rpcTimeoutNow, &raft.TimeoutNowRequest{RPCHeader: h})},
		// Signed integers past each width: int16, int32, int64, and negative ones.
		{"signed_install_snapshot_int32", request(rpcInstallSnapshot, &raft.InstallSnapshotRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: 128}, SnapshotVersion: 32767, Term: 10,
			Leader: []byte("a"), Size: 70000})},
		{"signed_install_snapshot_int64", request(rpcInstallSnapshot, &raft.InstallSnapshotRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: 32768}, SnapshotVersion: 255, Term: 10,
			Leader: []byte("a"), Size: 5000000000})},
		{"signed_timeout_now_negative", request(rpcTimeoutNow, &raft.TimeoutNowRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: -1}})},
		{"signed_install_snapshot_negative", request(rpcInstallSnapshot, &raft.InstallSnapshotRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: -33}, SnapshotVersion: -129, Term: 10,
			Leader: []byte("a"), Size: -2147483649})},
	}
}

// newPipelineTransport is a transport whose pipelines take depth requests before any answer
// is read. Since v1.5.0 a pipeline holds MaxRPCsInFlight-2 requests awaiting their answers
// (and as many answers awaiting Consumer()) before AppendEntries blocks; the default,
// DefaultMaxRPCsInFlight = 2, holds none.
func newPipelineTransport(depth int) (*raft.NetworkTransport, error) {
	return raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, &raft.NetworkTransportConfig{
		MaxPool: 3, Timeout: 10 * time.Second, MaxRPCsInFlight: depth + 2,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "raft-net", Output: os.Stderr, Level: hclog.DefaultLevel}),
	})
}
