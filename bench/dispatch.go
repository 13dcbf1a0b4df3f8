package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// passResult is what one dispatch pass measured.
type passResult struct {
	tasks, jobs int
	elapsed     time.Duration
	rate        float64         // tasks/s, first submit to last job end
	taskLat     []time.Duration // per task: client submit → attempt ended (agent's result)
	jobLat      []time.Duration // per job: client submit → client sees the job end (durable)
	failed      int             // tasks that did not complete
	retried     int             // tasks with more than one attempt
	submitErrs  int
	offeredRate float64 // open-loop passes: the rate asked for
	lateSubmits int     // open-loop passes: submits that started late
	submitLat   []time.Duration
	// Sums over tasks, for the mean time from assignment (coordinator
	// clock) to start, and from start to end (agent clock; same host).
	assignToStart, startToEnd time.Duration
	timed                     int
}

// meanCycle splits a task's time on a slot: assigned → started (delivery
// and spawn), started → ended (the run), and what is left of slots/rate
// (result → durable → next assignment), all in ms.
func (r *passResult) meanCycle(totalSlots int) (assign, run, turnaround float64) {
	if r.timed == 0 || r.rate == 0 {
		return 0, 0, 0
	}
	a := float64(r.assignToStart) / float64(r.timed) / 1e6
	b := float64(r.startToEnd) / float64(r.timed) / 1e6
	cycle := float64(totalSlots) / r.rate * 1000
	return round(a, 3), round(b, 3), round(cycle-a-b, 3)
}

// runDispatch pushes no-op tasks through an in-process coordinator with a
// durable store (fsync on) to real agents with a no-op executor: a max-rate
// pass over mTLS, the same pass over the plaintext listener, and a pass at
// half the measured max rate for latency.
func runDispatch(ctx context.Context, r *Result) error {
	if opts.latJobTasks == 0 {
		opts.latJobTasks = opts.jobTasks
	}
	r.param("tasks", opts.tasks)
	r.param("agents", opts.dispatchAgents)
	r.param("slots_per_agent", opts.slots)
	r.param("tasks_per_job", opts.jobTasks)
	r.param("submitters", opts.submitters)
	r.param("latency_pass_tasks_per_job", opts.latJobTasks)
	r.param("latency_pass_time", opts.latDuration.String())
	r.param("store", "bbolt, fsync on (StoreNoSync=false)")
	r.param("agent_data_dirs", opts.agentDir)
	joinLimitNote(r)

	p, err := startCoordinatorFor(ctx, r, "dispatch", false)
	if err != nil {
		return err
	}
	defer p.stop()
	fleet, err := joinAgents(ctx, p, "d", opts.dispatchAgents, opts.slots, 16, noopExec{})
	if err != nil {
		return err
	}
	defer fleet.stop()
	fleet.run()
	if _, err := p.admin.waitConnected(ctx, opts.dispatchAgents, time.Minute); err != nil {
		return err
	}

	// The plaintext twin runs beside it, and the passes alternate (mTLS,
	// plaintext, three times), so drift on this shared machine hits both
	// alike; the figures are each side's median pass.
	plainP, plainFleet, perr := startPlaintextTwin(ctx, r)
	if perr == nil {
		defer plainP.stop()
		defer plainFleet.stop()
	} else {
		r.param("plaintext_pass", perr.Error())
		r.note("mTLS/plaintext ratio: %v (target >= 0.90)", perr)
	}
	rounds := 3
	if perr != nil {
		rounds = 1
	}
	var et *etcdTwin
	if opts.etcd {
		if et, err = startEtcdTwin(ctx, r); err != nil {
			return fmt.Errorf("etcd store: %w", err)
		}
		defer et.stop()
	}
	var etcdPasses []*etcdPass
	var mtlsPasses, plainPasses []*passResult
	for i := 0; i < rounds; i++ {
		progress("dispatch: max-rate pass %d/%d over mTLS: %d tasks in jobs of %d", i+1, rounds, opts.tasks, opts.jobTasks)
		pr, err := maxRatePass(ctx, p.admin, opts.tasks, opts.jobTasks, opts.submitters)
		if err != nil {
			return fmt.Errorf("mTLS pass: %w", err)
		}
		mtlsPasses = append(mtlsPasses, pr)
		if perr == nil {
			progress("dispatch: max-rate pass %d/%d over plaintext", i+1, rounds)
			pp, err := maxRatePass(ctx, plainP.admin, opts.tasks, opts.jobTasks, opts.submitters)
			if err != nil {
				return fmt.Errorf("plaintext pass: %w", err)
			}
			plainPasses = append(plainPasses, pp)
		}
		if et != nil {
			progress("dispatch: max-rate pass %d/%d on the etcd store", i+1, rounds)
			ep, err := et.pass(ctx)
			if err != nil {
				return fmt.Errorf("etcd pass: %w", err)
			}
			etcdPasses = append(etcdPasses, ep)
		}
	}
	full := medianPass(mtlsPasses)
	progress("dispatch: %.0f tasks/s over mTLS (median of %d)", full.rate, len(mtlsPasses))
	r.param("max_rate_passes", len(mtlsPasses))
	r.fig("tasks_per_s", round(full.rate, 0), "/s").atLeast(50000).withNote("mTLS, max rate, durable; median pass")
	r.fig("max_rate_task_p50_ms", ms(percentile(full.taskLat, 50)), "ms").withNote("submit → result at max rate (includes queueing)")
	r.fig("max_rate_task_p99_ms", ms(percentile(full.taskLat, 99)), "ms")
	r.fig("max_rate_elapsed_s", round(full.elapsed.Seconds(), 2), "s")
	cycleFigures(r, full, opts.dispatchAgents*opts.slots)
	if full.failed > 0 || full.retried > 0 || full.submitErrs > 0 {
		r.note("max-rate pass: %d tasks did not complete, %d were retried, %d submits failed", full.failed, full.retried, full.submitErrs)
	}
	if len(plainPasses) > 0 {
		plain := medianPass(plainPasses)
		var pairs []string
		for i := range plainPasses {
			pairs = append(pairs, fmt.Sprintf("%.0f/%.0f", mtlsPasses[i].rate, plainPasses[i].rate))
		}
		r.fig("plaintext_tasks_per_s", round(plain.rate, 0), "/s").withNote("median pass")
		r.fig("mtls_to_plaintext_ratio", round(full.rate/plain.rate, 3), "").atLeast(0.90).withNote("median mTLS pass / median plaintext pass")
		r.note("alternating passes, mTLS/plaintext tasks/s: %s", strings.Join(pairs, ", "))
	}
	if len(etcdPasses) > 0 {
		var rates []string
		for i := range etcdPasses {
			rates = append(rates, fmt.Sprintf("%.0f/%.0f", mtlsPasses[i].rate, etcdPasses[i].rate))
		}
		r.note("alternating passes, bbolt/etcd tasks/s: %s", strings.Join(rates, ", "))
		etcdFigures(r, etcdPasses, full)
	}

	// Two latency passes. "Half that load" reads as half the 50,000/s
	// target, so the first pass offers 25,000/s (or -lat-rate); the second
	// offers half the rate this run measured, which on a fast host is a
	// heavier load and shows the tail as the machine fills up.
	halfTarget := dispatchTarget / 2.0
	if opts.latRate > 0 {
		halfTarget = opts.latRate
		r.param("latency_pass_rate", opts.latRate)
	}
	if err := latencyPass(ctx, r, p.admin, "half_load", halfTarget, "half the 50,000/s target"); err != nil {
		return err
	}
	if !opts.latSkipMax && full.rate/2 > halfTarget {
		if err := latencyPass(ctx, r, p.admin, "half_max", full.rate/2, "half the max rate measured above"); err != nil {
			return err
		}
	}
	if et != nil {
		if err := latencyPass(ctx, r, et.p.admin, "etcd_half_target", etcdDispatchTarget/2, "the etcd store at half its 20,000/s target"); err != nil {
			return err
		}
	}
	return nil
}

// dispatchTarget is the dispatch target in tasks/s.
const dispatchTarget = 50000

// latencyPass offers rate tasks/s open-loop for -lat-time and reports
// task, job and submit latency and the store's group commits, as figures
// named prefix_*.
func latencyPass(ctx context.Context, r *Result, a *adminAPI, prefix string, rate float64, what string) error {
	progress("dispatch: latency pass at %s: %.0f tasks/s offered for %s in jobs of %d", what, rate, opts.latDuration, opts.latJobTasks)
	commits0, _, cerr := scrapeHistogram(ctx, a, "ward_store_commit_seconds")
	lat, err := openLoopPass(ctx, a, rate, opts.latJobTasks, opts.latDuration)
	if err != nil {
		return fmt.Errorf("latency pass at %s: %w", what, err)
	}
	commits1, _, cerr2 := scrapeHistogram(ctx, a, "ward_store_commit_seconds")
	r.fig(prefix+"_offered_per_s", round(lat.offeredRate, 0), "/s").withNote(what)
	r.fig(prefix+"_achieved_per_s", round(lat.rate, 0), "/s")
	r.fig(prefix+"_task_p50_ms", ms(percentile(lat.taskLat, 50)), "ms").withNote("client submit → attempt ended on the agent")
	r.fig(prefix+"_task_p99_ms", ms(percentile(lat.taskLat, 99)), "ms").atMost(10)
	r.fig(prefix+"_job_p50_ms", ms(percentile(lat.jobLat, 50)), "ms").withNote("client submit → job end seen by a log follower (durable)")
	r.fig(prefix+"_job_p99_ms", ms(percentile(lat.jobLat, 99)), "ms")
	r.fig(prefix+"_submit_p99_ms", ms(percentile(lat.submitLat, 99)), "ms").withNote("POST /v1/jobs until durable")
	if cerr == nil && cerr2 == nil {
		commitFigures(r, prefix+"_", commits1.sub(commits0), opts.latDuration)
	}
	if lat.failed > 0 || lat.retried > 0 || lat.submitErrs > 0 || lat.lateSubmits > 0 {
		r.note("latency pass at %s: %d tasks did not complete, %d retried, %d submits failed, %d submits started late (the submitter could not keep the offered rate)", what, lat.failed, lat.retried, lat.submitErrs, lat.lateSubmits)
	}
	return nil
}

// commitFigures reports the store's group commits seen over d: their rate
// and duration, as figures named prefix+commit*.
func commitFigures(r *Result, prefix string, c histogram, d time.Duration) {
	r.fig(prefix+"commits_per_s", round(c.count/d.Seconds(), 0), "/s").withNote("group commits to the store")
	r.fig(prefix+"commit_p50_ms", c.quantile(0.5)*1000, "ms").withNote("bucket upper bound, ward_store_commit_seconds")
	r.fig(prefix+"commit_p99_ms", c.quantile(0.99)*1000, "ms").withNote("bucket upper bound, ward_store_commit_seconds")
	r.fig(prefix+"commit_busy", round(c.sum/d.Seconds(), 3), "").withNote("share of the time the store spent committing (sum of ward_store_commit_seconds / wall time)")
}

// startPlaintextTwin starts the plaintext twin of the dispatch cluster: a
// second coordinator with its plaintext migration listener on loopback, and
// agents whose sessions run over it (authenticated by a signed nonce, not
// encrypted). Joins and the admin API still use TLS, as they always do.
func startPlaintextTwin(ctx context.Context, r *Result) (*inproc, *agentFleet, error) {
	p, err := startCoordinatorFor(ctx, r, "dispatch-plaintext", true)
	if err != nil {
		return nil, nil, err
	}
	addr := p.plaintextAddr()
	fleet, err := joinAgents(ctx, p, "p", opts.dispatchAgents, opts.slots, 16, noopExec{}, func(a *config.Agent) {
		a.InsecurePlaintextCoordinator = addr
	})
	if err != nil {
		p.stop()
		return nil, nil, err
	}
	fleet.run()
	if _, err := p.admin.waitConnected(ctx, opts.dispatchAgents, time.Minute); err != nil {
		fleet.stop()
		p.stop()
		return nil, nil, err
	}
	r.param("plaintext_pass", "agent sessions over the plaintext migration listener on "+addr)
	return p, fleet, nil
}

// medianPass returns the pass with the median rate.
func medianPass(ps []*passResult) *passResult {
	sorted := append([]*passResult(nil), ps...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a].rate < sorted[b].rate })
	return sorted[len(sorted)/2]
}

// maxRatePass submits tasks as jobs of jobTasks with conc submitters as
// fast as they are accepted, follows every job to its end, then reads each
// job's attempts for per-task latency.
func maxRatePass(ctx context.Context, a *adminAPI, tasks, jobTasks, conc int) (*passResult, error) {
	return maxRatePassCmd(ctx, a, tasks, jobTasks, conc, []string{"/bin/true"})
}

func maxRatePassCmd(ctx context.Context, a *adminAPI, tasks, jobTasks, conc int, argv []string) (*passResult, error) {
	njobs := (tasks + jobTasks - 1) / jobTasks
	type jobRun struct {
		id      string
		count   int
		submit  time.Time
		submitD time.Duration
		end     time.Time
		err     error
	}
	jobs := make([]jobRun, njobs)
	start := time.Now()
	var ends sync.WaitGroup
	followers := make(chan struct{}, 16)
	err := parallel(ctx, njobs, conc, func(i int) error {
		n := min(jobTasks, tasks-i*jobTasks)
		spec := api.JobSpec{Name: fmt.Sprintf("bench-%d", i), Argv: argv, Count: n}
		t0 := time.Now()
		j, err := a.submit(ctx, spec)
		if err != nil {
			return err
		}
		jobs[i] = jobRun{id: j.ID, count: n, submit: t0, submitD: time.Since(t0)}
		ends.Add(1)
		go func() {
			defer ends.Done()
			followers <- struct{}{}
			defer func() { <-followers }()
			_, err := a.waitJobEnd(ctx, j.ID)
			jobs[i].end, jobs[i].err = time.Now(), err
		}()
		return nil
	})
	if err != nil {
		return nil, err
	}
	ends.Wait()
	res := &passResult{tasks: tasks, jobs: njobs}
	var last time.Time
	for _, j := range jobs {
		if j.err != nil {
			return nil, j.err
		}
		if j.end.After(last) {
			last = j.end
		}
		res.jobLat = append(res.jobLat, j.end.Sub(j.submit))
		res.submitLat = append(res.submitLat, j.submitD)
	}
	res.elapsed = last.Sub(start)
	res.rate = float64(tasks) / res.elapsed.Seconds()
	for _, j := range jobs {
		if err := collectTasks(ctx, a, j.id, j.submit, res); err != nil {
			return nil, err
		}
	}
	sortLat(res)
	return res, nil
}

// openLoopPass offers rate tasks/s as jobs of jobTasks on a fixed schedule
// for d, whatever the coordinator's pace (open loop), and measures each
// task's and job's latency from its submission.
func openLoopPass(ctx context.Context, a *adminAPI, rate float64, jobTasks int, d time.Duration) (*passResult, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("no rate to offer")
	}
	interval := time.Duration(float64(jobTasks) / rate * float64(time.Second))
	njobs := max(1, int(d/interval))
	type jobRun struct {
		id      string
		submit  time.Time
		submitD time.Duration
		end     time.Time
		err     error
	}
	jobs := make([]jobRun, njobs)
	var wg sync.WaitGroup
	var late atomic.Int64
	inflight := make(chan struct{}, 256)
	start := time.Now()
	for i := range njobs {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		} else if w < -interval {
			late.Add(1)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		inflight <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inflight }()
			spec := api.JobSpec{Name: fmt.Sprintf("lat-%d", i), Argv: []string{"/bin/true"}, Count: jobTasks}
			t0 := time.Now()
			j, err := a.submit(ctx, spec)
			jobs[i].submit, jobs[i].submitD = t0, time.Since(t0)
			if err != nil {
				jobs[i].err = err
				return
			}
			jobs[i].id = j.ID
			_, err = a.waitJobEnd(ctx, j.ID)
			jobs[i].end, jobs[i].err = time.Now(), err
		}()
	}
	wg.Wait()
	res := &passResult{tasks: njobs * jobTasks, jobs: njobs, offeredRate: rate, lateSubmits: int(late.Load())}
	var last time.Time
	for _, j := range jobs {
		if j.err != nil {
			res.submitErrs++
			continue
		}
		if j.end.After(last) {
			last = j.end
		}
		res.jobLat = append(res.jobLat, j.end.Sub(j.submit))
		res.submitLat = append(res.submitLat, j.submitD)
	}
	res.elapsed = last.Sub(start)
	res.rate = float64(res.tasks) / res.elapsed.Seconds()
	for _, j := range jobs {
		if j.err != nil {
			continue
		}
		if err := collectTasks(ctx, a, j.id, j.submit, res); err != nil {
			return nil, err
		}
	}
	if res.submitErrs > 0 {
		return res, fmt.Errorf("%d of %d submits failed; first: %v", res.submitErrs, njobs, firstJobErr(jobs, func(j jobRun) error { return j.err }))
	}
	sortLat(res)
	return res, nil
}

func firstJobErr[T any](jobs []T, f func(T) error) error {
	for _, j := range jobs {
		if err := f(j); err != nil {
			return err
		}
	}
	return nil
}

// collectTasks reads a finished job's attempts: latency from the client's
// submit to each task's end, and tasks that failed or were retried.
func collectTasks(ctx context.Context, a *adminAPI, id string, submit time.Time, res *passResult) error {
	d, err := a.jobDetail(ctx, id)
	if err != nil {
		return err
	}
	for _, t := range d.Tasks {
		if t.State != api.TaskCompleted {
			res.failed++
		}
		if len(t.Attempts) > 1 {
			res.retried++
		}
		if len(t.Attempts) == 0 {
			continue
		}
		last := t.Attempts[len(t.Attempts)-1]
		if !last.Ended.IsZero() {
			res.taskLat = append(res.taskLat, last.Ended.Sub(submit))
			if !last.Started.IsZero() {
				res.assignToStart += last.Started.Sub(last.Assigned)
				res.startToEnd += last.Ended.Sub(last.Started)
				res.timed++
			}
		}
	}
	return nil
}

func sortLat(r *passResult) {
	slices.Sort(r.taskLat)
	slices.Sort(r.jobLat)
	slices.Sort(r.submitLat)
}

// cycleFigures reports where a slot's time goes per task (means).
func cycleFigures(r *Result, p *passResult, totalSlots int) {
	a, b, c := p.meanCycle(totalSlots)
	r.fig("slot_cycle_ms", round(float64(totalSlots)/p.rate*1000, 3), "ms").withNote(fmt.Sprintf("slots (%d) / tasks per s: one task's turn on a slot", totalSlots))
	r.fig("assigned_to_started_ms", a, "ms").withNote("mean: Assign frame delivery + start")
	r.fig("started_to_ended_ms", b, "ms").withNote("mean: the task itself")
	r.fig("result_to_next_assign_ms", c, "ms").withNote("mean, the rest: result → durable → scheduled → durable")
}
