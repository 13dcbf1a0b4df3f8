package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runDispatchExec runs tasks that are real processes (/bin/true by
// default) on real agents with Ward's process executor (own process group,
// output pipes, exit status), through an in-process durable coordinator.
func runDispatchExec(ctx context.Context, r *Result) error {
	path, err := exec.LookPath(opts.execCmd)
	if err != nil {
		return fmt.Errorf("-exec-cmd %s: %w", opts.execCmd, err)
	}
	slots := opts.execSlots
	if slots == 0 {
		slots = runtime.NumCPU()
	}
	r.param("tasks", opts.execTasks)
	r.param("agents", opts.execAgents)
	r.param("slots_per_agent", slots)
	r.param("command", path)
	r.param("tasks_per_job", opts.jobTasks)
	r.param("store", "bbolt, fsync on (StoreNoSync=false)")
	joinLimitNote(r)
	p, err := startCoordinatorFor(ctx, r, "exec", false)
	if err != nil {
		return err
	}
	defer p.stop()
	fleet, err := joinAgents(ctx, p, "x", opts.execAgents, slots, opts.execAgents, nil)
	if err != nil {
		return err
	}
	defer fleet.stop()
	fleet.run()
	if _, err := p.admin.waitConnected(ctx, opts.execAgents, time.Minute); err != nil {
		return err
	}
	// The ceiling: this machine's own rate of starting the command the way
	// Ward's executor does, at the same concurrency, measured just before
	// and just after Ward's pass (the host drifts), without Ward.
	conc := opts.execAgents * slots
	before, err := spawnRate(ctx, path, conc, opts.execCeilTime)
	if err != nil {
		return err
	}
	commits0, _, cerr := scrapeHistogram(ctx, p.admin, "ward_store_commit_seconds")
	res, err := maxRatePassCmd(ctx, p.admin, opts.execTasks, opts.jobTasks, opts.submitters, []string{path})
	if err != nil {
		return err
	}
	commits1, _, cerr2 := scrapeHistogram(ctx, p.admin, "ward_store_commit_seconds")
	after, err := spawnRate(ctx, path, conc, opts.execCeilTime)
	if err != nil {
		return err
	}
	ceil := (before + after) / 2
	r.fig("tasks_per_s", round(res.rate, 0), "/s").atLeast(1500).ratio(ceil, "spawn_ceiling_per_s").withNote("real processes, durable")
	r.fig("spawn_ceiling_per_s", round(ceil, 0), "/s").withNote(fmt.Sprintf("no Ward: os/exec of the command with its own process group and stdout/stderr pipes, %d at a time (agents × slots); %.0f before and %.0f after Ward's pass", conc, before, after))
	r.fig("elapsed_s", round(res.elapsed.Seconds(), 2), "s")
	cycleFigures(r, res, opts.execAgents*slots)
	if cerr == nil && cerr2 == nil {
		commitFigures(r, "", commits1.sub(commits0), res.elapsed)
	}
	r.fig("task_p50_ms", ms(percentile(res.taskLat, 50)), "ms").withNote("submit → exit at max rate (includes queueing)")
	if res.failed > 0 || res.retried > 0 {
		r.note("%d tasks did not complete, %d were retried", res.failed, res.retried)
	}
	return nil
}

// spawnRate starts path over and over from conc goroutines for d, as Ward's
// process executor does (own process group, stdout and stderr pipes read to
// the end, wait), and returns processes per second.
func spawnRate(ctx context.Context, path string, conc int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var firstErr error
	var errOnce sync.Once
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) && ctx.Err() == nil {
				cmd := exec.Command(path)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				out, err := cmd.StdoutPipe()
				if err == nil {
					var errp io.ReadCloser
					if errp, err = cmd.StderrPipe(); err == nil {
						if err = cmd.Start(); err == nil {
							io.Copy(io.Discard, out)
							io.Copy(io.Discard, errp)
							err = cmd.Wait()
						}
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("spawn ceiling: %s: %w", path, firstErr)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), ctx.Err()
}
