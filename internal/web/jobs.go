package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/config"
)

// jobsView is the job list with its filters.
type jobsView struct {
	Jobs               []api.Job
	State, Queue, User string
	States             []string
	Pager              pager
}

var jobStates = []string{api.JobQueued, api.JobRunning, api.JobCompleted, api.JobFailed, api.JobCanceled}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request, q *rq) error {
	qs := r.URL.Query()
	v := jobsView{State: qs.Get("state"), Queue: strings.TrimSpace(qs.Get("queue")), User: strings.TrimSpace(qs.Get("user")), States: jobStates}
	page, off := pageOf(r)
	jobs, total, err := s.cluster.Jobs(r.Context(), q.p, api.JobFilter{State: v.State, Queue: v.Queue, User: v.User, Newest: true, Offset: off, Limit: pageSize})
	if err != nil {
		return err
	}
	v.Jobs = jobs
	v.Pager = newPager(r, page, len(jobs), total)
	s.render(w, http.StatusOK, "jobs", s.view(q, "Jobs", "jobs", v, nil))
	return nil
}

// submitView is the submit form, with what was typed.
type submitView struct {
	Form       url.Values
	Priorities []string
}

func (s *Server) submitForm(w http.ResponseWriter, r *http.Request, q *rq) error {
	form := url.Values{"count": {"1"}, "slots": {"1"}, "priority": {"normal"}, "queue": {"default"}, "retries": {"3"}}
	s.render(w, http.StatusOK, "submit", s.view(q, "Submit a job", "jobs", submitView{Form: form, Priorities: api.Priorities}, nil))
	return nil
}

// submit submits a job from the form. A refusal shows the form again with
// everything as typed and the reason.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, q *rq) error {
	spec, err := specFromForm(r)
	if err == nil {
		var j api.Job
		if j, err = s.cluster.SubmitJob(r.Context(), q.p, spec); err == nil {
			return s.done(w, r, q, fmt.Sprintf("Job %s submitted: %d task(s).", j.ID, j.Spec.Count), Prefix+"jobs/"+url.PathEscape(j.ID))
		}
	}
	e := api.AsError(err)
	s.render(w, api.HTTPStatus(e.Code), "submit", s.view(q, "Submit a job", "jobs", submitView{Form: r.PostForm, Priorities: api.Priorities}, e))
	return nil
}

// specFromForm reads the submit form into a job spec; the coordinator
// validates the rest, as it does for the API.
func specFromForm(r *http.Request) (api.JobSpec, error) {
	bad := func(fix, format string, args ...any) (api.JobSpec, error) {
		return api.JobSpec{}, api.Errorf(api.CodeInvalidArgument, fix, format, args...)
	}
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	argv, err := splitCommand(r.PostFormValue("command"))
	if err != nil {
		return bad("quote arguments with '…' or \"…\" and close every quote", "command: %v", err)
	}
	spec := api.JobSpec{Name: f("name"), Argv: argv, Dir: f("dir"), Priority: f("priority"), Queue: f("queue"), WaitForNodes: r.PostFormValue("wait_for_nodes") != ""}
	num := func(k, label string, dst *int) error {
		if f(k) == "" {
			return nil
		}
		n, err := strconv.Atoi(f(k))
		if err != nil {
			_, err = bad("give a whole number", "%s %q is not a whole number", label, f(k))
			return err
		}
		*dst = n
		return nil
	}
	if err := num("count", "tasks", &spec.Count); err != nil {
		return api.JobSpec{}, err
	}
	if err := num("slots", "slots per task", &spec.Slots); err != nil {
		return api.JobSpec{}, err
	}
	if f("retries") != "" {
		var n int
		if err := num("retries", "retries", &n); err != nil {
			return api.JobSpec{}, err
		}
		spec.Retries = &n
	}
	if t := f("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return bad("give a duration such as 30m, or leave it empty for none", "timeout %q is not a duration", t)
		}
		spec.Timeout = api.Duration(d)
	}
	if err := num("max_running", "max running tasks", &spec.MaxRunning); err != nil {
		return api.JobSpec{}, err
	}
	if m := f("memory"); m != "" {
		if spec.Memory, err = config.ParseSize(m); err != nil {
			return bad("give a size such as 512MiB or 4GiB, or leave it empty for none", "memory per task: %v", err)
		}
	}
	spec.Exclusive = r.PostFormValue("exclusive") != ""
	spec.CancelOnFailure = r.PostFormValue("cancel_on_failure") != ""
	spec.Setup, spec.Teardown = f("setup"), f("teardown")
	if spec.Labels, err = parsePairs("label", r.PostFormValue("labels"), true); err != nil {
		return bad("write labels as key=value, one per line or separated by commas", "%v", err)
	}
	if spec.Env, err = parsePairs("environment variable", r.PostFormValue("env"), false); err != nil {
		return bad("write one NAME=value per line", "%v", err)
	}
	return spec, nil
}

// jobView is one job: its tasks (a page of them) and its output.
type jobView struct {
	Job       api.JobDetail
	Terminal  bool
	TaskState string
	Pager     pager
	States    []string
	Output    int    // the task whose output is shown; -1: every task
	OutputOK  bool   // the output can be shown for the choice
	Events    string // URL of the live output stream
	Text      string // URL of the stored output as plain text
	Progress  progressView
	Files     []api.OutputFile // output files of the tasks shown
	FilesNote string           // why no files are listed
}

var taskStates = []string{api.TaskQueued, api.TaskAssigned, api.TaskRunning, api.TaskCompleted, api.TaskFailed, api.TaskTimedOut, api.TaskCanceled, api.TaskLost}

// maxAllOutputTasks is the most tasks whose output the job page streams
// together; larger jobs show one task's output at a time.
const maxAllOutputTasks = 1000

func (s *Server) job(w http.ResponseWriter, r *http.Request, q *rq) error {
	id := r.PathValue("id")
	qs := r.URL.Query()
	page, off := pageOf(r)
	state := qs.Get("task_state")
	d, total, err := s.cluster.Job(r.Context(), q.p, id, api.TaskFilter{State: state, Offset: off, Limit: pageSize})
	if err != nil {
		return err
	}
	v := jobView{Job: d, TaskState: state, States: taskStates, Output: -1}
	v.Terminal = d.State == api.JobCompleted || d.State == api.JobFailed || d.State == api.JobCanceled
	v.Pager = newPager(r, page, len(d.Tasks), total)
	if t := qs.Get("output"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n >= d.Spec.Count {
			return api.Errorf(api.CodeInvalidArgument, fmt.Sprintf("choose a task from 0 to %d", d.Spec.Count-1), "task %q is not a task of job %s", t, d.ID)
		}
		v.Output = n
	} else if d.Spec.Count == 1 {
		v.Output = 0
	}
	v.OutputOK = v.Output >= 0 || d.Spec.Count <= maxAllOutputTasks
	base := Prefix + "jobs/" + url.PathEscape(d.ID)
	task := "all"
	if v.Output >= 0 {
		task = strconv.Itoa(v.Output)
	}
	v.Events = base + "/events?task=" + task
	v.Text = base + "/output?task=" + task
	v.Progress = progressOf(d.Job)
	if err := s.jobFiles(r, q, &v); err != nil {
		return err
	}
	s.render(w, http.StatusOK, "job", s.view(q, "Job "+d.ID, "jobs", v, nil))
	return nil
}

// taskParam reads ?task= (an index, or all).
func taskParam(r *http.Request) (int, error) {
	t := r.URL.Query().Get("task")
	if t == "" || t == "all" {
		return -1, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, api.Errorf(api.CodeInvalidArgument, "pass a task index or all", "task %q is not an index", t)
	}
	return n, nil
}

// sseHeartbeat keeps an idle output stream alive through proxies and lets
// the server notice a browser that went away.
const sseHeartbeat = 15 * time.Second

// progressEvery is how often a followed job's counts are checked; an event
// goes out only when they changed.
const progressEvery = time.Second

// jobEvents streams a job's output as server-sent events, fed by the
// coordinator's log follower (no polling): "chunk" events with an
// api.LogChunk, then one "end" event; "failure" if the stream cannot
// start.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request, q *rq) error {
	task, err := taskParam(r)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // a stream outlives any request read timeout
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		return err
	}
	flush := func() {
		mu.Lock()
		defer mu.Unlock()
		rc.Flush()
	}
	flush()
	// The writer goroutine ends before the handler returns: nothing may
	// write to w after that.
	stop, exited := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-exited }()
	go func() {
		defer close(exited)
		t := time.NewTicker(sseHeartbeat)
		defer t.Stop()
		// The job's counts, sent when they change (the page's progress).
		pt := time.NewTicker(progressEvery)
		defer pt.Stop()
		var last progressView
		known := -1
		sendProgress := func() {
			pr, err := s.cluster.JobProgress(r.Context(), q.p, r.PathValue("id"), known)
			if err != nil {
				return // the log stream reports what is wrong
			}
			known = pr.Failed
			pv := progressOf(api.Job{Spec: api.JobSpec{Count: pr.Tasks}, Counts: pr.Counts})
			if pv != last {
				last = pv
				send("progress", pv)
				flush()
			}
		}
		sendProgress()
		for {
			select {
			case <-stop:
				return
			case <-pt.C:
				sendProgress()
			case <-t.C:
				mu.Lock()
				rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprint(w, ": ping\n\n")
				rc.Flush()
				mu.Unlock()
			}
		}
	}()
	err = s.cluster.FollowLogs(r.Context(), q.p, r.PathValue("id"), task, true, func(ch api.LogChunk) error {
		if ch.End {
			// The final counts first: the page stops listening at the end.
			total := 0
			for _, n := range ch.Counts {
				total += n
			}
			if ch.Counts != nil {
				send("progress", progressOf(api.Job{Spec: api.JobSpec{Count: total}, Counts: ch.Counts}))
			}
			return send("end", ch)
		}
		return send("chunk", ch)
	}, flush)
	if err != nil {
		e := api.AsError(err)
		send("failure", e)
	}
	flush()
	return nil
}

// jobOutput is the stored output as plain text, each line prefixed with
// its task when every task's output is shown, as `ward logs` prints it.
func (s *Server) jobOutput(w http.ResponseWriter, r *http.Request, q *rq) error {
	task, err := taskParam(r)
	if err != nil {
		return err
	}
	started := false
	partial := map[int]string{}
	begin := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusOK)
		}
	}
	return s.cluster.FollowLogs(r.Context(), q.p, r.PathValue("id"), task, false, func(ch api.LogChunk) error {
		begin()
		if ch.End {
			for t, rest := range partial {
				fmt.Fprintf(w, "[%d] %s\n", t, rest)
			}
			return nil
		}
		if task >= 0 {
			_, err := w.Write([]byte(ch.Data))
			return err
		}
		text := partial[ch.Task] + ch.Data
		lines := strings.Split(text, "\n")
		for _, l := range lines[:len(lines)-1] {
			if _, err := fmt.Fprintf(w, "[%d] %s\n", ch.Task, l); err != nil {
				return err
			}
		}
		if rest := lines[len(lines)-1]; rest != "" {
			partial[ch.Task] = rest
		} else {
			delete(partial, ch.Task)
		}
		return nil
	}, begin)
}
