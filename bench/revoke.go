package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/enroll"
)

// runRevoke measures how fast `ward node revoke` (POST
// /v1/nodes/{name}/revoke) cuts a live agent session: simulated agents hold
// sessions and heartbeat; nodes are revoked one at a time, and each
// latency runs from the API call to the agent's own reader seeing its
// session end (Bye or EOF). A revoked agent then tries to reconnect, which
// must be refused.
func runRevoke(ctx context.Context, r *Result) error {
	n, k := opts.revokeAgents, min(opts.revokes, opts.revokeAgents)
	r.param("agents", n)
	r.param("revokes", k)
	r.param("revoke_concurrency", 1)
	joinLimitNote(r)
	p, err := startCoordinator(ctx, "revoke", raiseJoinLimit)
	if err != nil {
		return err
	}
	defer p.stop()
	f, _, err := simFleetFor(ctx, p, n, newSrcPool(3, 1, 16), opts.enrollConc, opts.enrollConc)
	if err != nil {
		return err
	}
	defer f.stop()
	if _, err := p.admin.waitConnected(ctx, n, time.Minute); err != nil {
		return err
	}

	var lat, apiLat []time.Duration
	for i := range k {
		a := f.agents[i]
		t0 := time.Now()
		err := p.admin.do(ctx, http.MethodPost, "/v1/nodes/"+a.name+"/revoke", api.RevokeRequest{Reason: "key-compromise"}, nil)
		apiD := time.Since(t0)
		if err != nil {
			return fmt.Errorf("revoke %s: %w", a.name, err)
		}
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("revoke %s: its session was still open 10s after the revoke call", a.name)
		}
		lat = append(lat, time.Duration(a.endedAt.Load()-t0.UnixNano()))
		apiLat = append(apiLat, apiD)
	}
	slices.Sort(lat)
	slices.Sort(apiLat)
	r.fig("revoke_to_session_cut_p50_ms", ms(percentile(lat, 50)), "ms")
	r.fig("revoke_to_session_cut_p99_ms", ms(percentile(lat, 99)), "ms").atMost(100).
		withNote("API call → the revoked agent's reader sees its session end")
	r.fig("revoke_to_session_cut_max_ms", ms(lat[len(lat)-1]), "ms")
	r.fig("revoke_api_p99_ms", ms(percentile(apiLat, 99)), "ms").withNote("POST /v1/nodes/{name}/revoke until it answers")

	// The revoked certificate must be refused at the next handshake.
	refused := 0
	for i := range min(k, 10) {
		if err := f.connect(ctx, f.agents[i]); err != nil {
			refused++
		} else {
			f.agents[i].close()
		}
	}
	r.fig("revoked_reconnects_refused", float64(refused), fmt.Sprintf("of %d", min(k, 10))).atLeast(float64(min(k, 10)))
	still := 0
	for _, a := range f.agents[k:] {
		if a.endedAt.Load() != 0 {
			still++
		}
	}
	if still > 0 {
		r.note("%d agents that were not revoked lost their session during the run", still)
	}
	return nil
}

// simFleetFor joins n simulated agents to an in-process coordinator and
// opens their sessions, joinConc and connConc at a time.
func simFleetFor(ctx context.Context, p *inproc, n int, src *srcPool, joinConc, connConc int) (*simFleet, enroll.JoinString, error) {
	jsf, err := p.joinStrings(ctx, n)
	if err != nil {
		return nil, enroll.JoinString{}, err
	}
	js0, err := enroll.ParseJoinString(jsf(0))
	if err != nil {
		return nil, js0, err
	}
	f := newSimFleet(js0.Cluster, p.c.ClusterAddr(), js0.Addr, js0.Pin, src)
	agents := make([]*simAgent, n)
	err = parallel(ctx, n, joinConc, func(i int) error {
		js, err := enroll.ParseJoinString(jsf(i))
		if err != nil {
			return err
		}
		agents[i], err = f.join(ctx, fmt.Sprintf("s%06d", i), js)
		return err
	})
	if err != nil {
		return nil, js0, err
	}
	for _, a := range agents {
		f.add(a)
	}
	err = parallel(ctx, n, connConc, func(i int) error { return f.connect(ctx, agents[i]) })
	if err != nil {
		f.stop()
		return nil, js0, err
	}
	return f, js0, nil
}
