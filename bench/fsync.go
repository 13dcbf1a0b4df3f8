package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
	"time"
)

// fsyncLatency is the machine's floor for a durable commit: fdatasync of
// one 4 KiB page in the directory the coordinator's store uses, idle and
// while every core is busy. A store commit needs two (data, then meta), and
// a task crosses up to three commits, so the busy p99 bounds what the
// dispatch latency pass can reach when the load itself fills the cores.
type fsyncLatency struct {
	IdleP50, IdleP99, BusyP50, BusyP99 time.Duration
}

// measureFsync times n fdatasyncs idle, then n with one spinning OS thread
// per core. GOMAXPROCS is raised during the busy half so the spinners
// contend with the syncing thread for the cores, not for Go's Ps: that is
// the contention a loaded coordinator's journal thread meets.
func measureFsync(dir string, n int) (fsyncLatency, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return fsyncLatency{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 4096)
	run := func() ([]time.Duration, error) {
		d := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			if _, err := f.WriteAt(page, int64(i%64)*4096); err != nil {
				return nil, err
			}
			t := time.Now()
			if err := f.Sync(); err != nil {
				return nil, fmt.Errorf("fsync %s: %w", f.Name(), err)
			}
			d = append(d, time.Since(t))
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d, nil
	}
	var out fsyncLatency
	idle, err := run()
	if err != nil {
		return out, err
	}
	cores := runtime.NumCPU()
	prev := runtime.GOMAXPROCS(cores + 1)
	defer runtime.GOMAXPROCS(prev)
	var stop atomic.Bool
	for i := 0; i < cores; i++ {
		go func() {
			runtime.LockOSThread()
			x := 0
			for !stop.Load() {
				for j := 0; j < 1000; j++ {
					x += j
				}
			}
			_ = x
		}()
	}
	time.Sleep(50 * time.Millisecond)
	busy, err := run()
	stop.Store(true)
	if err != nil {
		return out, err
	}
	q := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	out.IdleP50, out.IdleP99 = q(idle, 50), q(idle, 99)
	out.BusyP50, out.BusyP99 = q(busy, 50), q(busy, 99)
	return out, nil
}
