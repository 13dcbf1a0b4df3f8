package etcd

import (
	"context"
	"time"
)

// EndpointStatus is how one etcd endpoint answered a status request.
type EndpointStatus struct {
	Endpoint string
	OK       bool
	Error    string
	Latency  time.Duration
	Version  string
	// Leader says this member leads the etcd cluster.
	Leader bool
	// RaftIndex and AppliedIndex are the member's raft log position and
	// how far it has applied it; Lag is their difference in entries.
	RaftIndex, AppliedIndex, Lag uint64
}

// EndpointHealth asks every endpoint for its status, each within timeout.
func (s *Store) EndpointHealth(ctx context.Context, timeout time.Duration) []EndpointStatus {
	out := make([]EndpointStatus, 0, len(s.opts.Endpoints))
	for _, ep := range s.opts.Endpoints {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		st, err := s.cli.Status(pctx, ep)
		cancel()
		es := EndpointStatus{Endpoint: ep, Latency: time.Since(start)}
		if err != nil {
			es.Error = err.Error()
		} else {
			es.OK, es.Version = true, st.Version
			es.Leader = st.Header != nil && st.Header.MemberId == st.Leader
			es.RaftIndex, es.AppliedIndex = st.RaftIndex, st.RaftAppliedIndex
			if es.RaftIndex > es.AppliedIndex {
				es.Lag = es.RaftIndex - es.AppliedIndex
			}
		}
		out = append(out, es)
	}
	return out
}
