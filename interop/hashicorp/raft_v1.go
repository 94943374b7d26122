//go:build !raftlatest
// +build !raftlatest

// What the harness needs of hashicorp/raft v1.1.2 (Debian's golang-github-hashicorp-raft-dev),
// on go-msgpack 0.5.5: the default build.

package main

import (
	"bytes"
	"os"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
	"github.com/hashicorp/raft"
)

// generation names the library in the golden vectors' first lines.
const generation = "hashicorp/raft v1.1.2"

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

// generationVectors are the golden vectors only this generation writes: none.
func generationVectors() []vector {
	return nil
}

// newPipelineTransport is a transport whose pipelines take depth requests before any answer
// is read: any v1.1.2 transport (its pipelines hold up to rpcMaxPipeline = 128 answers).
func newPipelineTransport(depth int) (*raft.NetworkTransport, error) {
	return raft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, os.Stderr)
}
