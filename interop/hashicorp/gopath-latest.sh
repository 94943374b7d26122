#!/bin/sh
# Assemble the GOPATH that `go build -tags raftlatest ./interop/hashicorp` needs: the newest
# hashicorp/raft and the dependencies Debian 12 lacks or ships too old, each extracted with
# `git archive` at the commit pinned below (what raft's go.mod asks for). Debian's GOPATH
# (/usr/share/gocode) goes after it for the rest. Nothing here is committed to raftnet.
#
#   interop/hashicorp/gopath-latest.sh GOPATH SRC
#
# SRC holds git clones (plain or bare) of github.com/hashicorp/raft, go-msgpack, go-metrics and
# go-hclog, as SRC/raft, SRC/go-msgpack, SRC/go-metrics, SRC/go-hclog; or name each git
# directory with RAFT_GIT, MSGPACK_GIT, METRICS_GIT, HCLOG_GIT. Then:
#
#   GO111MODULE=off GOPATH=GOPATH:/usr/share/gocode \
#       go build -tags raftlatest -o hashicorp-interop-latest ./interop/hashicorp
#   RAFTNET_GO_RAFT_LATEST_GOPATH=GOPATH cargo test --test hashicorp_interop
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 GOPATH SRC" >&2
	exit 2
fi
gopath=$1
src=$2

# hashicorp/raft v1.7.3-42-g1837036 (main, 2026-06-11): go.mod asks for go-msgpack/v2 v2.1.5,
# go-metrics v0.5.4 (whose compat package uses armon/go-metrics v0.4.1: hashicorp/go-metrics
# at its tag v0.4.1 is that module, path github.com/armon/go-metrics) and go-hclog v1.6.3.
RAFT_REV=1837036daf50bd973bcb0f3fc536b2d451cebf5d
MSGPACK_REV=60665ead73d6bfe3ef876446d5036172d00ca375 # v2.1.5
METRICS_REV=e30ca647817214904f3fd472775d359b5687b3ec # v0.5.4
ARMON_METRICS_REV=b6d5c860c07ef6eeec89f4a662c7b452dd4d0c93 # v0.4.1
HCLOG_REV=d12136aa2e51933c460084f5083b6d5bb9d41960 # v1.6.3

gitdir() {
	if [ -d "$1/.git" ]; then echo "$1/.git"; else echo "$1"; fi
}

# put GITDIR REV IMPORT_PATH
put() {
	rm -rf "$gopath/src/$3"
	mkdir -p "$gopath/src/$3"
	git --git-dir="$(gitdir "$1")" archive "$2" | tar -x -C "$gopath/src/$3"
}

put "${RAFT_GIT:-$src/raft}" $RAFT_REV github.com/hashicorp/raft
put "${MSGPACK_GIT:-$src/go-msgpack}" $MSGPACK_REV github.com/hashicorp/go-msgpack/v2
put "${METRICS_GIT:-$src/go-metrics}" $METRICS_REV github.com/hashicorp/go-metrics
put "${METRICS_GIT:-$src/go-metrics}" $ARMON_METRICS_REV github.com/armon/go-metrics
put "${HCLOG_GIT:-$src/go-hclog}" $HCLOG_REV github.com/hashicorp/go-hclog
echo "GOPATH=$gopath:/usr/share/gocode"
