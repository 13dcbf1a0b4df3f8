package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/agent"
	"github.com/wardcluster/ward/internal/api"
)

// runRotate rotates the cluster CA through every phase (POST /v1/ca/rotate,
// as `ward ca rotate` does: trust, issue, renew, retire) while real agents
// run a steady stream of tasks, then counts the tasks that did not
// complete (target 0), checks that every agent renewed onto the new CA,
// and restarts every agent from its data dir to prove that the renewed
// certificate and trust bundle on disk connect.
func runRotate(ctx context.Context, r *Result) error {
	n := opts.rotateAgents
	taskTime := 20 * time.Millisecond
	spread := 2 * time.Second
	r.param("agents", n)
	r.param("task_time", taskTime.String())
	r.param("renew_spread", spread.String())
	r.param("load", "jobs of 100 tasks every 50 ms, 4 slots per agent")
	joinLimitNote(r)
	p, err := startCoordinator(ctx, "rotate", raiseJoinLimit)
	if err != nil {
		return err
	}
	defer p.stop()
	exec := sleepExec{d: taskTime}
	fleet, err := joinAgents(ctx, p, "r", n, 4, 16, exec)
	if err != nil {
		return err
	}
	fleet.run()
	stopped := false
	defer func() {
		if !stopped {
			fleet.stop()
		}
	}()
	if _, err := p.admin.waitConnected(ctx, n, time.Minute); err != nil {
		return err
	}

	// Load: a job of 100 tasks every 50 ms until the rotation is done.
	var (
		jobsMu sync.Mutex
		jobs   []string
		loadWG sync.WaitGroup
		subErr atomic.Int64
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer func() { stopLoad(); loadWG.Wait() }()
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
			}
			j, err := p.admin.submit(ctx, api.JobSpec{Name: fmt.Sprintf("rot-%d", i), Argv: []string{"/bin/true"}, Count: 100})
			if err != nil {
				subErr.Add(1)
				continue
			}
			jobsMu.Lock()
			jobs = append(jobs, j.ID)
			jobsMu.Unlock()
		}
	}()
	time.Sleep(time.Second)

	rates := sampleRates(ctx, p.admin, 500*time.Millisecond, "ward_handshakes_total", "ward_cert_renewals_total")
	t0 := time.Now()
	phase := func(name string, req api.RotateRequest) (api.CAStatus, error) {
		var st api.CAStatus
		t := time.Now()
		err := p.admin.do(ctx, http.MethodPost, "/v1/ca/rotate", req, &st)
		if err != nil {
			return st, fmt.Errorf("ca rotate (%s): %w", name, err)
		}
		progress("rotate: phase %s (%s) in %s", st.PhaseName, name, time.Since(t).Round(time.Millisecond))
		return st, nil
	}
	if _, err := phase("trust", api.RotateRequest{}); err != nil {
		return err
	}
	time.Sleep(time.Second) // the new root reaches every bundle
	if _, err := phase("issue", api.RotateRequest{}); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if _, err := phase("renew", api.RotateRequest{Spread: api.Duration(spread)}); err != nil {
		return err
	}
	// Wait for every agent to hold a certificate from the new CA.
	tr := time.Now()
	var st api.CAStatus
	for {
		st = api.CAStatus{} // agents_on_old_ca is omitted when empty: decode into a fresh value
		if err := p.admin.do(ctx, http.MethodGet, "/v1/ca/status", nil, &st); err != nil {
			return err
		}
		if len(st.OnOldCA) == 0 {
			break
		}
		if time.Since(tr) > spread+30*time.Second {
			r.note("%d agents still on the old CA %s after the renew phase started: %v", len(st.OnOldCA), time.Since(tr).Round(time.Second), st.OnOldCA)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	renewD := time.Since(tr)
	onOld := len(st.OnOldCA)
	if _, err := phase("retire", api.RotateRequest{}); err != nil {
		return err
	}
	rotD := time.Since(t0)
	peak, grew := rates.finish()
	time.Sleep(time.Second)
	stopLoad()
	loadWG.Wait()

	// Every task submitted during the rotation must complete.
	var failed, retried, total int
	jobsMu.Lock()
	ids := append([]string(nil), jobs...)
	jobsMu.Unlock()
	for _, id := range ids {
		if _, err := p.admin.waitJobEnd(ctx, id); err != nil {
			return err
		}
		d, err := p.admin.jobDetail(ctx, id)
		if err != nil {
			return err
		}
		for _, t := range d.Tasks {
			total++
			if t.State != api.TaskCompleted {
				failed++
			}
			if len(t.Attempts) > 1 {
				retried++
			}
		}
	}
	st0, _ := p.admin.status(ctx)
	r.fig("rotation_failed_tasks", float64(failed), "").atMost(0).withNote(fmt.Sprintf("of %d tasks submitted during the rotation", total))
	r.fig("rotation_retried_tasks", float64(retried), "").withNote("tasks that needed a second attempt")
	r.fig("rotation_time_s", round(rotD.Seconds(), 2), "s").withNote("trust → retire, with 1 s pauses")
	r.fig("renew_phase_s", round(renewD.Seconds(), 2), "s").withNote(fmt.Sprintf("until no agent holds an old-CA certificate (spread %s)", spread))
	r.fig("agents_on_old_ca", float64(onOld), "").atMost(0)
	r.fig("renewals_during_rotation", grew["ward_cert_renewals_total"], "").withNote("ward_cert_renewals_total increase, all roles and paths")
	r.fig("peak_renewals_per_s", round(peak["ward_cert_renewals_total"], 1), "/s").withNote("highest rate between 0.5 s scrapes of /metrics")
	r.fig("handshakes_during_rotation", grew["ward_handshakes_total"], "").withNote("ward_handshakes_total increase: renewal runs over live sessions, so a rotation should not cause a reconnect storm")
	r.fig("peak_handshakes_per_s", round(peak["ward_handshakes_total"], 1), "/s").withNote("highest rate between 0.5 s scrapes of /metrics (includes the admin API's own connections)")
	r.fig("agents_connected_after", float64(st0.Connected), fmt.Sprintf("of %d", n)).atLeast(float64(n))
	if e := subErr.Load(); e > 0 {
		r.note("%d job submissions failed during the rotation", e)
	}

	// Restart every agent from its data dir: the renewed certificate and the
	// new bundle on disk must connect.
	stopped = true
	fleet.stop2(false)
	again, err := fleet.reopen(ctx, exec)
	if err != nil {
		return fmt.Errorf("restart agents after the rotation: %w", err)
	}
	defer again.stop()
	again.run()
	_, err = p.admin.waitConnected(ctx, n, 30*time.Second)
	ok := n
	if err != nil {
		st, _ := p.admin.status(ctx)
		ok = st.Connected
	}
	r.fig("agents_reconnected_after_restart", float64(ok), fmt.Sprintf("of %d", n)).atLeast(float64(n)).
		withNote("every agent restarted from its data dir after the old CA was retired")
	return nil
}

// sleepExec "runs" each attempt for d without a process, so tasks are in
// flight while the CA rotates.
type sleepExec struct{ d time.Duration }

func (e sleepExec) Run(a api.Assignment, r agent.Reporter) agent.Handle {
	start := time.Now()
	r.Started(start)
	time.AfterFunc(e.d, func() {
		r.Exited(api.TaskResult{AttemptRef: a.AttemptRef, ExitCode: 0, Reason: api.EndExited, Started: api.NanosOf(start), Ended: api.NanosOf(time.Now())})
	})
	return noopHandle{}
}
