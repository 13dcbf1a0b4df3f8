package web

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// progressView is a job's counts as `ward run`'s progress line gives them:
// done, failed (ended without completing), running (or assigned), queued.
type progressView struct {
	Total   int `json:"total"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Running int `json:"running"`
	Queued  int `json:"queued"`
}

func progressOf(j api.Job) progressView {
	c := j.Counts
	return progressView{Total: j.Spec.Count, Done: c[api.TaskCompleted],
		Failed:  c[api.TaskFailed] + c[api.TaskTimedOut] + c[api.TaskCanceled] + c[api.TaskLost],
		Running: c[api.TaskRunning] + c[api.TaskAssigned], Queued: c[api.TaskQueued]}
}

// Ended is how many tasks ended, completed or not (the progress bar).
func (p progressView) Ended() int { return p.Done + p.Failed }

// jobFiles lists the output files a job's tasks left, for the job page:
// every task's when the job is small enough to stream all output, else
// the chosen task's.
func (s *Server) jobFiles(r *http.Request, q *rq, v *jobView) error {
	if len(v.Job.Spec.Outputs) == 0 {
		return nil
	}
	task := v.Output
	if task < 0 && v.Job.Spec.Count > maxAllOutputTasks {
		v.FilesNote = "Choose a task above to list its output files."
		return nil
	}
	files, err := s.cluster.Outputs(r.Context(), q.p, v.Job.ID, task)
	if err != nil {
		if e := api.AsError(err); e.Code == api.CodeNotFound {
			// Deleted after staging_retention: the page says so.
			v.FilesNote = e.Message
			return nil
		}
		return err
	}
	v.Files = files
	return nil
}

// fileURL is where the console serves one output file.
func fileURL(job string, f api.OutputFile) string {
	return Prefix + "jobs/" + url.PathEscape(job) + "/files/" + strconv.Itoa(f.Task) + "?path=" + url.QueryEscape(f.Path)
}

// outputFile downloads one file a task left. The coordinator checks that
// the user may read the job (a submitter: only its own) and audits the
// download, as for `ward job output`.
func (s *Server) outputFile(w http.ResponseWriter, r *http.Request, q *rq) error {
	task, err := strconv.Atoi(r.PathValue("task"))
	if err != nil || task < 0 {
		return api.Errorf(api.CodeInvalidArgument, "follow a link from the job page", "task %q is not an index", r.PathValue("task"))
	}
	f, body, err := s.cluster.OpenOutput(r.Context(), q.p, r.PathValue("id"), task, r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fmt.Sprintf("task-%d-%s", task, path.Base(f.Path))}))
	h.Set(api.HeaderSHA256, f.SHA256)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, body); err != nil {
		s.log.Info("web console: output download ended early", "job", r.PathValue("id"), "task", task, "path", f.Path, "err", err)
	}
	return nil
}

// jobActions are requeue and clone, as `ward job requeue` and `ward job
// clone`.
func (s *Server) jobActions() []action {
	jobURL := func(r *http.Request) string { return Prefix + "jobs/" + url.PathEscape(r.PathValue("id")) }
	return []action{
		{
			pattern: Prefix + "jobs/{id}/requeue", need: authz.JobRequeue,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				id := r.PathValue("id")
				return confirmView{Heading: "Requeue job " + id, Button: "Requeue job " + id, Back: jobURL(r),
					Lines: []string{"The job's tasks go back in the queue under the same job ID; only a job that ended can be requeued.",
						"Every earlier attempt stays in the history; the new ones carry the next requeue number, and --retries counts afresh."},
					Fields: []field{{Name: "failed", Label: "Only the tasks that did not complete", Type: "checkbox", Checked: r.URL.Query().Get("failed") == "1"}}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				res, err := s.cluster.RequeueJob(r.Context(), q.p, r.PathValue("id"), r.PostFormValue("failed") != "")
				return fmt.Sprintf("Job %s requeued: %d task(s) back in the queue (requeue %d).", res.ID, res.Requeued, res.Requeues), jobURL(r), err
			},
		},
		{
			pattern: Prefix + "jobs/{id}/clone", need: authz.JobClone,
			confirm: func(r *http.Request, q *rq) (confirmView, error) {
				d, _, err := s.cluster.Job(r.Context(), q.p, r.PathValue("id"), api.TaskFilter{None: true})
				if err != nil {
					return confirmView{}, err
				}
				sp := d.Spec
				return confirmView{Heading: "Clone job " + d.ID, Button: "Submit the copy", Back: jobURL(r),
					Lines: []string{"A new job is submitted with this job's command and options (files, environment, setup and teardown included), changed as below.",
						"Command: " + shellJoin(sp.Argv)},
					Fields: []field{
						{Name: "name", Label: "Name", Type: "text", Value: sp.Name},
						{Name: "count", Label: "Tasks", Type: "text", Value: strconv.Itoa(sp.Count)},
						{Name: "priority", Label: "Priority", Type: "select", Options: api.Priorities, Value: sp.Priority},
						{Name: "queue", Label: "Queue", Type: "text", Value: sp.Queue},
					}}, nil
			},
			do: func(r *http.Request, q *rq) (string, string, error) {
				d, _, err := s.cluster.Job(r.Context(), q.p, r.PathValue("id"), api.TaskFilter{None: true})
				if err != nil {
					return "", "", err
				}
				spec, err := cloneSpec(d.Spec, r)
				if err != nil {
					return "", "", err
				}
				j, err := s.cluster.CloneJob(r.Context(), q.p, d.ID, spec)
				if err != nil {
					return "", "", err
				}
				return fmt.Sprintf("Job %s submitted as a copy of job %s: %d task(s).", j.ID, d.ID, j.Spec.Count), Prefix + "jobs/" + url.PathEscape(j.ID), nil
			},
		},
	}
}

// cloneSpec is a job's spec with the clone form's changes; the
// coordinator validates it as any submission.
func cloneSpec(base api.JobSpec, r *http.Request) (api.JobSpec, error) {
	s := base
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	s.Name, s.Queue = f("name"), f("queue")
	if p := f("priority"); p != "" {
		if !slices.Contains(api.Priorities, p) {
			return s, api.Errorf(api.CodeInvalidArgument, "choose one of "+strings.Join(api.Priorities, ", "), "priority %q is not a priority", p)
		}
		s.Priority = p
	}
	if c := f("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil {
			return s, api.Errorf(api.CodeInvalidArgument, "give a whole number of tasks", "tasks %q is not a whole number", c)
		}
		s.Count = n
	}
	return s, nil
}

// shortSum shortens a sha256:<hex> checksum for a table; the title
// attribute carries it whole.
func shortSum(sum string) string {
	if len(sum) > 19 {
		return sum[:19] + "…"
	}
	return sum
}
