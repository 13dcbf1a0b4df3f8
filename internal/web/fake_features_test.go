package web

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
)

// The fake cluster's side of issue 16's features and issue 15's users.

func (f *fakeCluster) Maintenance(ctx context.Context, p authz.Principal) (api.Maintenance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maint, nil
}

func (f *fakeCluster) SetMaintenance(ctx context.Context, p authz.Principal, req api.MaintenanceRequest) (api.Maintenance, error) {
	if err := f.act(p, fmt.Sprintf("maintenance %v %q", req.On, req.Message)); err != nil {
		return api.Maintenance{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maint = api.Maintenance{On: req.On, Message: req.Message}
	if req.On {
		f.maint.Since, f.maint.By = time.Now(), p.String()
	}
	return f.maint, nil
}

func (f *fakeCluster) RequeueJob(ctx context.Context, p authz.Principal, id string, failedOnly bool) (api.RequeueResult, error) {
	return api.RequeueResult{Job: api.Job{ID: id, Requeues: 1}, Requeued: 4}, f.act(p, fmt.Sprintf("requeue %s failed=%v", id, failedOnly))
}

func (f *fakeCluster) CloneJob(ctx context.Context, p authz.Principal, id string, spec api.JobSpec) (api.Job, error) {
	if err := f.act(p, fmt.Sprintf("clone %s count=%d name=%q priority=%s", id, spec.Count, spec.Name, spec.Priority)); err != nil {
		return api.Job{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := api.Job{ID: fmt.Sprint(len(f.jobs) + 1), Spec: spec, State: api.JobQueued, CloneOf: id}
	f.jobs = append(f.jobs, j)
	return j, nil
}

// fakeOutput is the one output file every task of the fake left.
const fakeOutput = "result <1>.txt"

func (f *fakeCluster) Outputs(ctx context.Context, p authz.Principal, id string, task int) ([]api.OutputFile, error) {
	return []api.OutputFile{{Task: 0, Attempt: 1, Path: fakeOutput, Size: 6, SHA256: "sha256:" + strings.Repeat("ab", 32)}}, f.read(p)
}

func (f *fakeCluster) OpenOutput(ctx context.Context, p authz.Principal, id string, task int, path string) (api.OutputFile, io.ReadCloser, error) {
	if err := f.act(p, fmt.Sprintf("download %s/%d/%s", id, task, path)); err != nil {
		return api.OutputFile{}, nil, err
	}
	if task != 0 || path != fakeOutput {
		return api.OutputFile{}, nil, api.Errorf(api.CodeNotFound, "list them", "task %d of job %s left no output %q", task, id, path)
	}
	return api.OutputFile{Task: 0, Attempt: 1, Path: path, Size: 6}, io.NopCloser(strings.NewReader("bytes\n")), nil
}

func (f *fakeCluster) Profiles(ctx context.Context, p authz.Principal) ([]api.Profile, error) {
	slots := 3
	return []api.Profile{{Name: "big", Settings: api.ProfileSettings{Slots: &slots, Labels: map[string]string{"tier": "gpu"}}, Assign: api.ProfileAssignment{Labels: map[string]string{"rack": "r1"}},
		Revision: 2, Nodes: []string{"node-0001"}}}, f.read(p)
}

func (f *fakeCluster) Users(ctx context.Context, p authz.Principal) ([]api.User, error) {
	return []api.User{{Name: "admin", Role: "admin", State: "active"}, {Name: "alice", Role: "submitter", State: "active", Certs: 1}}, f.read(p)
}

func (f *fakeCluster) AddUser(ctx context.Context, p authz.Principal, req api.UserCreate) (api.UserInvite, error) {
	return api.UserInvite{User: api.User{Name: req.Name, Role: req.Role, State: "invited"}, Join: "wardjoin://h1?user=" + req.Name + "&token=secret"}, f.act(p, "user add "+req.Name+" "+req.Role)
}

func (f *fakeCluster) ChangeUserRole(ctx context.Context, p authz.Principal, name string, req api.UserRoleChange) (api.UserInvite, error) {
	return api.UserInvite{User: api.User{Name: name, Role: req.Role, State: "invited"}, Join: "wardjoin://h1?user=" + name + "&token=secret2"}, f.act(p, "user role "+name+" "+req.Role)
}

func (f *fakeCluster) RemoveUser(ctx context.Context, p authz.Principal, name string) (api.UserRemoved, error) {
	return api.UserRemoved{User: api.User{Name: name, State: "removed"}}, f.act(p, "user remove "+name)
}

func (f *fakeCluster) JobProgress(ctx context.Context, p authz.Principal, id string, known int) (api.JobProgress, error) {
	for _, j := range f.jobs {
		if j.ID == id {
			return api.JobProgress{ID: id, State: j.State, Tasks: j.Spec.Count, Counts: j.Counts}, f.read(p)
		}
	}
	return api.JobProgress{}, api.Errorf(api.CodeNotFound, "list jobs", "no job with ID %s", id)
}
