package cli

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
)

// Task output choices for `ward run` and `ward job status --watch`, given
// as -o: a follower on a terminal prints only failed tasks' output unless
// asked for all of it.
const (
	taskOutputAll    = "all"
	taskOutputFailed = "failed"
)

// progressPoll is how often a follower asks for a job's counts.
const progressPoll = 500 * time.Millisecond

// rateWindow is how far back the task rate (and so the ETA) looks.
const rateWindow = 10 * time.Second

// plainProgressEvery spaces the progress lines printed when stderr is not
// a terminal (--progress on): one line per change, at most this often.
const plainProgressEvery = 2 * time.Second

// progressFlags are the follower's display options: --progress, and the
// task output chosen with -o all or -o failed (see globals.taskOutput).
type progressFlags struct {
	progress string
}

func (f *progressFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.progress, "progress", "auto", "live progress line on stderr (done, failed, running, queued, rate, ETA): auto (when stderr is a terminal), on or off")
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotationTaskOutput] = "1"
}

// annotationTaskOutput marks the commands that take -o all and -o failed.
const annotationTaskOutput = "ward-task-output"

// resolve picks whether to draw the progress line and whether to print
// every task's output or only failed tasks'. On a terminal the default is
// the line and failed tasks only; elsewhere, and with -o json, it is every
// task's output as it comes, with no line.
func (f *progressFlags) resolve(g *globals) (line bool, all bool, err error) {
	switch f.progress {
	case "auto":
		line = !g.json() && isTerminal(g.stderr)
	case "on":
		line = !g.json()
	case "off":
	default:
		return false, false, api.Errorf(api.CodeInvalidArgument, "use --progress auto, on or off", "--progress %q is not a choice", f.progress)
	}
	switch g.taskOutput {
	case taskOutputAll:
		all = true
	case taskOutputFailed:
	default:
		all = g.json() || !line
	}
	return line, all, nil
}

// progressLine is one status line kept at the bottom of stderr. Writes to
// stdout and stderr that go through its writers first clear it and then
// draw it again, so task output never runs into it. When stderr is not a
// terminal it prints a plain line per change instead, at most every
// plainProgressEvery.
type progressLine struct {
	mu      sync.Mutex
	err     io.Writer
	live    bool // redraw in place (a terminal)
	text    string
	drawn   bool
	ended   bool      // done was called: the line is not drawn again
	printed time.Time // plain mode: when, and what, was printed last
	last    string
}

func newProgressLine(stderr io.Writer) *progressLine {
	return &progressLine{err: stderr, live: isTerminal(stderr)}
}

// set shows text as the current progress.
func (p *progressLine) set(text string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended || (text == p.text && (p.drawn || !p.live)) {
		return
	}
	p.text = text
	if p.live {
		p.clearLocked()
		p.drawLocked()
		return
	}
	if now.Sub(p.printed) >= plainProgressEvery {
		p.printed, p.last = now, text
		fmt.Fprintln(p.err, text)
	}
}

// done leaves the last progress on its own line, as a record of the end.
func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	if p.live {
		if p.drawn {
			fmt.Fprint(p.err, "\n")
		}
		p.drawn = false
		return
	}
	if p.text != "" && p.text != p.last {
		fmt.Fprintln(p.err, p.text)
	}
}

func (p *progressLine) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.err, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progressLine) drawLocked() {
	if p.text != "" && !p.ended {
		fmt.Fprint(p.err, p.text)
		p.drawn = true
	}
}

// writer returns w wrapped so that each write moves the line out of the way.
func (p *progressLine) writer(w io.Writer) io.Writer {
	if !p.live {
		return w
	}
	return lineAwareWriter{p: p, w: w}
}

type lineAwareWriter struct {
	p *progressLine
	w io.Writer
}

func (l lineAwareWriter) Write(b []byte) (int, error) {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	l.p.clearLocked()
	n, err := l.w.Write(b)
	if len(b) > 0 && b[len(b)-1] == '\n' {
		l.p.drawLocked()
	}
	return n, err
}

// rateMeter turns successive counts of ended tasks into a rate over the
// last rateWindow.
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	ended int
}

// observe records ended tasks at now and returns tasks per second over
// the window (0 until two samples span some time).
func (m *rateMeter) observe(now time.Time, ended int) float64 {
	m.samples = append(m.samples, rateSample{now, ended})
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) >= rateWindow {
		m.samples = m.samples[1:]
	}
	first := m.samples[0]
	dt := now.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(ended-first.ended) / dt
}

// formatProgress is the progress line's text: done, failed, running and
// queued tasks of the total, the rate of ended tasks and the time left at
// that rate.
func formatProgress(pr api.JobProgress, rate float64) string {
	done := pr.Counts[api.TaskCompleted]
	running := pr.Counts[api.TaskRunning] + pr.Counts[api.TaskAssigned]
	queued := pr.Counts[api.TaskQueued]
	eta := "-"
	if left := pr.Tasks - done - pr.Failed; left == 0 {
		eta = "0s"
	} else if rate > 0 {
		eta = formatETA(time.Duration(float64(left) / rate * float64(time.Second)))
	}
	return fmt.Sprintf("job %s: %d/%d done, %d failed, %d running, %d queued | %s tasks/s | ETA %s",
		pr.ID, done, pr.Tasks, pr.Failed, running, queued, formatRate(rate), eta)
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return strconv.FormatFloat(r, 'f', 0, 64)
	case r >= 10:
		return strconv.FormatFloat(r, 'f', 1, 64)
	default:
		return strconv.FormatFloat(r, 'f', 2, 64)
	}
}

// formatETA rounds a time left to what a person reads at a glance.
func formatETA(d time.Duration) string {
	switch {
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 100*time.Hour:
		return d.Round(time.Minute).String()
	default:
		return "> 4d"
	}
}

// progressWatcher polls a job's progress until it ends: it keeps the line
// up to date and, when asked, prints each failed task's output once.
type progressWatcher struct {
	g          *globals
	c          *client
	id         string
	line       *progressLine // nil: no line
	printFails bool
	onChange   func(api.JobProgress) error // each new answer (-o json)
	printer    *linePrinter
	printed    map[int]bool
	meter      rateMeter
}

// run polls until the job ends (its last answer is returned) or ctx ends.
func (w *progressWatcher) run(ctx context.Context) (api.JobProgress, error) {
	known := 0
	var last api.JobProgress
	tick := time.NewTicker(progressPoll)
	defer tick.Stop()
	for {
		q := url.Values{}
		if w.printFails {
			q.Set("known_failed", strconv.Itoa(known))
		} else {
			// The list is not wanted: claim to know the count it has.
			q.Set("known_failed", strconv.Itoa(last.Failed))
		}
		var pr api.JobProgress
		if err := w.c.do(ctx, "GET", "/v1/jobs/"+url.PathEscape(w.id)+"/progress?"+q.Encode(), nil, &pr); err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		if w.printFails && len(pr.FailedTasks) > 0 {
			if err := w.printFailed(ctx, pr.FailedTasks); err != nil {
				return pr, err
			}
			known = pr.Failed
		}
		if w.onChange != nil && !progressEqual(pr, last) {
			if err := w.onChange(pr); err != nil {
				return pr, err
			}
		}
		now := time.Now()
		rate := w.meter.observe(now, pr.Counts[api.TaskCompleted]+pr.Failed)
		if w.line != nil {
			w.line.set(formatProgress(pr, rate), now)
		}
		last = pr
		if isJobTerminal(pr.State) {
			return pr, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-tick.C:
		}
	}
}

// printFailed prints the stored output of each failed task not printed yet.
func (w *progressWatcher) printFailed(ctx context.Context, tasks []int) error {
	for _, t := range tasks {
		if w.printed[t] {
			continue
		}
		w.printed[t] = true
		if err := printStoredLogs(ctx, w.c, w.id, t, w.printer); err != nil {
			return err
		}
	}
	return nil
}

func progressEqual(a, b api.JobProgress) bool {
	if a.State != b.State || a.Failed != b.Failed || len(a.Counts) != len(b.Counts) {
		return false
	}
	for k, v := range a.Counts {
		if b.Counts[k] != v {
			return false
		}
	}
	return true
}

func isJobTerminal(state string) bool {
	return state == api.JobCompleted || state == api.JobFailed || state == api.JobCanceled
}

// endChunk turns a finished job's progress into the end of a log stream,
// which is what the run summary reads.
func endChunk(pr api.JobProgress) api.LogChunk {
	return api.LogChunk{End: true, JobState: pr.State, Failed: pr.Failed, Counts: pr.Counts, Failures: pr.Failures}
}

// withProgressWriters routes g's output through line for the duration of a
// follow and returns the globals to print with.
func withProgressWriters(g *globals, line *progressLine) *globals {
	if line == nil {
		return g
	}
	cp := *g
	cp.stdout, cp.stderr = line.writer(g.stdout), line.writer(g.stderr)
	return &cp
}

// followOptions say how a follower shows a job: where task output goes,
// whether all of it or only failed tasks', and the progress line.
type followOptions struct {
	line   *progressLine // nil: none
	all    bool          // every task's output as it comes
	outDir string        // with all: files instead of printed lines
}

func newFollowOptions(g *globals, pf progressFlags, outDir string) (followOptions, error) {
	line, all, err := pf.resolve(g)
	if err != nil {
		return followOptions{}, err
	}
	fo := followOptions{all: all || outDir != "", outDir: outDir}
	if line {
		fo.line = newProgressLine(g.stderr)
	}
	return fo, nil
}

// follow shows job id until it ends and returns its end. g's writers are
// already routed through the line.
func (fo followOptions) follow(ctx context.Context, g *globals, c *client, id string) (api.LogChunk, error) {
	w := &progressWatcher{g: g, c: c, id: id, line: fo.line, printer: newLinePrinter(g), printed: map[int]bool{}}
	if !fo.all {
		w.printFails = true
		pr, err := w.run(ctx)
		if fo.line != nil {
			fo.line.done()
		}
		if err != nil {
			return api.LogChunk{}, err
		}
		return endChunk(pr), nil
	}
	var sink chunkSink = w.printer
	if fo.outDir != "" {
		d, err := newOutputDir(fo.outDir)
		if err != nil {
			return api.LogChunk{}, err
		}
		sink = d
	}
	if fo.line == nil {
		return followLogs(ctx, g, c, id, -1, sink, fo.outDir != "")
	}
	// The line is drawn by a poller beside the log stream; the stream's
	// end is the job's end, and the line shows it last.
	wctx, stop := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		w.run(wctx)
	}()
	end, err := followLogs(ctx, g, c, id, -1, sink, fo.outDir != "")
	stop()
	<-polled
	if err == nil {
		pr := api.JobProgress{ID: id, State: end.JobState, Counts: end.Counts, Failed: end.Failed}
		for _, n := range end.Counts {
			pr.Tasks += n
		}
		fo.line.set(formatProgress(pr, w.meter.observe(time.Now(), pr.Tasks)), time.Now())
		fo.line.done()
	}
	return end, err
}

// watchJob is `ward job status ID --watch`: it follows the job like ward
// run (the line, failed tasks' output) and then prints its status; with
// -o json, the progress as JSON lines. The exit code is 0 only if every
// task completed.
func watchJob(ctx context.Context, g *globals, pf progressFlags, id string, allTasks bool) error {
	fo, err := newFollowOptions(g, pf, "")
	if err != nil {
		return err
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var state string
	if g.json() {
		w := &progressWatcher{g: g, c: c, id: id, onChange: func(pr api.JobProgress) error { return printJSONLine(g.stdout, pr) }}
		pr, err := w.run(ctx)
		if err != nil {
			return err
		}
		state = pr.State
	} else {
		end, err := fo.follow(ctx, withProgressWriters(g, fo.line), c, id)
		if err != nil {
			return err
		}
		var d api.JobDetail
		if err := c.do(ctx, "GET", "/v1/jobs/"+url.PathEscape(id), nil, &d); err != nil {
			return err
		}
		printJobStatus(g.stdout, &d, allTasks)
		state = end.JobState
	}
	if state != api.JobCompleted {
		return exitError{1}
	}
	return nil
}
