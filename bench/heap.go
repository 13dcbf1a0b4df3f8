package main

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// runHeap is a diagnostic scenario (not in the default run): an in-process
// coordinator holds -heap-agents idle simulated agents, and the heap
// profile (-memprofile, written while they are connected) shows which
// coordinator structures an idle agent costs. Filter the profile with
// -focus=internal/coordinator or -focus=crypto/tls.(*Conn) for the
// coordinator's side: the simulated agents share the heap.
func runHeap(ctx context.Context, r *Result) error {
	n := opts.heapAgents
	r.param("agents", n)
	p, err := startCoordinator(ctx, "heap", raiseJoinLimit)
	if err != nil {
		return err
	}
	defer p.stop()
	var m0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	f, _, err := simFleetFor(ctx, p, n, newSrcPool(4, 1, 16), opts.scaleJoinC, opts.scaleConnC)
	if err != nil {
		return err
	}
	defer f.stop()
	if _, err := p.admin.waitConnected(ctx, n, time.Minute); err != nil {
		return err
	}
	time.Sleep(opts.scaleSettle)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	r.fig("heap_inuse_per_agent_kb", round(float64(m1.HeapInuse-m0.HeapInuse)/float64(n)/1024, 2), "KB").withNote("coordinator and simulated agents together")
	r.fig("stack_inuse_per_agent_kb", round(float64(m1.StackInuse-m0.StackInuse)/float64(n)/1024, 2), "KB").withNote("goroutine stacks, both sides")
	r.fig("goroutines_per_agent", round(float64(runtime.NumGoroutine())/float64(n), 2), "")
	if opts.memProfile != "" {
		path := opts.memProfile + ".heap"
		fh, err := os.Create(path)
		if err != nil {
			return err
		}
		pprof.Lookup("heap").WriteTo(fh, 0)
		fh.Close()
		r.note("heap profile with %d agents connected: %s", n, path)
	}
	if opts.goroutineProfile {
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
	}
	return nil
}
