package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
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
	res, err := maxRatePassCmd(ctx, p.admin, opts.execTasks, opts.jobTasks, opts.submitters, []string{path})
	if err != nil {
		return err
	}
	r.fig("tasks_per_s", round(res.rate, 0), "/s").atLeast(1500).withNote("real processes, durable")
	r.fig("elapsed_s", round(res.elapsed.Seconds(), 2), "s")
	cycleFigures(r, res, opts.execAgents*slots)
	r.fig("task_p50_ms", ms(percentile(res.taskLat, 50)), "ms").withNote("submit → exit at max rate (includes queueing)")
	if res.failed > 0 || res.retried > 0 {
		r.note("%d tasks did not complete, %d were retried", res.failed, res.retried)
	}
	return nil
}
