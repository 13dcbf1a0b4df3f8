package web

import (
	"context"
	"crypto/x509"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
)

// fakeCluster is an in-memory Cluster for unit tests and the benchmark: it
// records every action and the principal it came with.
type fakeCluster struct {
	mu      sync.Mutex
	nodes   []api.Node
	jobs    []api.Job
	actions []string
	who     []authz.Principal
	events  []audit.Event
	denied  bool                // every operation is refused, as for a revoked principal
	roots   []*x509.Certificate // the trust bundle
	maint   api.Maintenance
}

// newFakeCluster holds n nodes and j jobs of 4 tasks each.
func newFakeCluster(n, j int) *fakeCluster {
	f := &fakeCluster{}
	now := time.Now()
	for i := range n {
		f.nodes = append(f.nodes, api.Node{Name: fmt.Sprintf("node-%04d", i), State: "ready", Slots: 16, UsedSlots: i % 17, Running: i % 5,
			Labels: map[string]string{"rack": "r" + strconv.Itoa(i%20), "zone": "z1"}, CertSerial: fmt.Sprintf("%032x", i), CertExpiry: now.Add(20 * time.Hour),
			TLSVersion: "TLS 1.3", Link: "YES", Connected: true, Addr: "10.0.0.1:40000", LastSeen: now.Add(-2 * time.Second), Joined: now.Add(-time.Hour)})
	}
	for i := range j {
		st := []string{api.JobQueued, api.JobRunning, api.JobCompleted, api.JobFailed}[i%4]
		f.jobs = append(f.jobs, api.Job{ID: strconv.Itoa(i + 1), State: st, Submitted: now.Add(-time.Duration(j-i) * time.Second), SubmittedBy: "spiffe://c1/user/admin",
			Spec:   api.JobSpec{Argv: []string{"./simulate", "--seed", "{index}"}, Count: 4, Slots: 1, Queue: "default", Priority: "normal"},
			Counts: map[string]int{api.TaskCompleted: 3, api.TaskRunning: 1}})
	}
	return f
}

func (f *fakeCluster) act(p authz.Principal, what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.denied {
		return api.Errorf(api.CodePermissionDenied, "sign in again", "refused for %s", p.ID)
	}
	f.actions = append(f.actions, what)
	f.who = append(f.who, p)
	return nil
}

func (f *fakeCluster) read(p authz.Principal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.denied {
		return api.Errorf(api.CodePermissionDenied, "sign in again", "refused for %s", p.ID)
	}
	return nil
}

func (f *fakeCluster) actionsSeen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.actions...)
}

func (f *fakeCluster) Status(ctx context.Context, p authz.Principal) (api.Status, error) {
	return api.Status{Cluster: "c1", Coordinator: "spiffe://c1/coordinator/h1", Version: "test", Nodes: len(f.nodes), Connected: len(f.nodes),
		ClusterAddrs: []string{"h1:7443"}, PublicAddrs: []string{"h1:8443"}, CertExpiry: time.Now().Add(29 * 24 * time.Hour),
		Store: "bolt store /data/ward.db", StoreHealth: api.StoreHealth{OK: true, Latency: api.Duration(40 * time.Microsecond)}}, f.read(p)
}

func (f *fakeCluster) Nodes(ctx context.Context, p authz.Principal) ([]api.Node, error) {
	return append([]api.Node(nil), f.nodes...), f.read(p)
}

func (f *fakeCluster) Jobs(ctx context.Context, p authz.Principal, flt api.JobFilter) ([]api.Job, int, error) {
	var out []api.Job
	total := 0
	for i := len(f.jobs) - 1; i >= 0; i-- {
		j := f.jobs[i]
		if flt.State != "" && j.State != flt.State {
			continue
		}
		if total >= flt.Offset && (flt.Limit == 0 || len(out) < flt.Limit) {
			out = append(out, j)
		}
		total++
	}
	return out, total, f.read(p)
}

func (f *fakeCluster) Job(ctx context.Context, p authz.Principal, id string, tf api.TaskFilter) (api.JobDetail, int, error) {
	for _, j := range f.jobs {
		if j.ID == id {
			d := api.JobDetail{Job: j}
			for i := range j.Spec.Count {
				e := 0
				d.Tasks = append(d.Tasks, api.Task{Index: i, State: api.TaskCompleted, Attempts: []api.Attempt{{N: 1, Node: "node-0001", State: api.TaskCompleted, ExitCode: &e}}})
			}
			return d, len(d.Tasks), f.read(p)
		}
	}
	return api.JobDetail{}, 0, api.Errorf(api.CodeNotFound, "list jobs", "no job with ID %s", id)
}

func (f *fakeCluster) FollowLogs(ctx context.Context, p authz.Principal, id string, task int, follow bool, emit func(api.LogChunk) error, flush func()) error {
	if err := f.read(p); err != nil {
		return err
	}
	emit(api.LogChunk{Task: 0, Seq: 1, Attempt: 1, Stream: "stdout", Data: "hello <b>\n"})
	flush()
	return emit(api.LogChunk{End: true, JobState: api.JobCompleted})
}

func (f *fakeCluster) Tokens(ctx context.Context, p authz.Principal) ([]api.Token, error) {
	return []api.Token{{ID: "0123456789abcdef", State: "active", Uses: 1, Created: time.Now(), Expires: time.Now().Add(time.Hour)}}, f.read(p)
}

func (f *fakeCluster) Certs(ctx context.Context, p authz.Principal, flt api.CertFilter) ([]api.Cert, int, error) {
	return []api.Cert{{Serial: "0abc", Identity: "spiffe://c1/agent/node-0001", Role: "agent", Name: "node-0001", NotAfter: time.Now().Add(time.Hour)}}, 1, f.read(p)
}

func (f *fakeCluster) CAStatus(ctx context.Context, p authz.Principal) (api.CAStatus, error) {
	exp := time.Now().Add(300 * 24 * time.Hour)
	return api.CAStatus{PhaseName: "idle", Generation: 1, Roots: []api.CAInfo{{Subject: "c1 root CA", Serial: "01", Pin: "sha256:00", NotAfter: exp}},
		Issuing: api.CAInfo{Subject: "c1 issuing CA", Serial: "02", NotAfter: exp}, Trusted: []api.CAInfo{{Subject: "c1 issuing CA", Serial: "02", NotAfter: exp}},
		Agents: map[string]int{"c1 issuing CA": len(f.nodes)}, Next: "`ward ca rotate` creates a new root",
		CRL: &api.CRLInfo{Number: 3, ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(23 * time.Hour)}}, f.read(p)
}

func (f *fakeCluster) TrustBundle(ctx context.Context, p authz.Principal) ([]*x509.Certificate, error) {
	return f.roots, f.read(p)
}

func (f *fakeCluster) CRL(ctx context.Context, p authz.Principal) ([]byte, error) {
	return []byte{0x30}, f.read(p)
}

func (f *fakeCluster) Doctor(ctx context.Context, p authz.Principal, horizon time.Duration) (api.DoctorReport, error) {
	return api.DoctorReport{Horizon: api.Duration(horizon), Findings: []api.Finding{{Severity: api.SeverityWarning, Code: "TOKEN_BROAD", Finding: "join token x can enroll 50 agents", Fix: "revoke it"}}}, f.read(p)
}

func (f *fakeCluster) Audit(ctx context.Context, p authz.Principal, flt api.AuditFilter) ([]audit.Event, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]audit.Event(nil), f.events...), len(f.events), nil
}

func (f *fakeCluster) MigrationStatus(ctx context.Context, p authz.Principal) (api.MigrationStatus, error) {
	return api.MigrationStatus{Secure: len(f.nodes)}, f.read(p)
}

func (f *fakeCluster) Drain(ctx context.Context, p authz.Principal, node string, force bool) (api.DrainResult, error) {
	n := 0
	return api.DrainResult{Node: node, Drain: true, Withdrawn: &n}, f.act(p, "drain "+node)
}

func (f *fakeCluster) Undrain(ctx context.Context, p authz.Principal, node string) (api.DrainResult, error) {
	return api.DrainResult{Node: node}, f.act(p, "undrain "+node)
}

func (f *fakeCluster) RevokeNode(ctx context.Context, p authz.Principal, node, reason string) (api.RevokeResult, error) {
	return api.RevokeResult{Node: node}, f.act(p, "revoke "+node+" "+reason)
}

func (f *fakeCluster) SubmitJob(ctx context.Context, p authz.Principal, spec api.JobSpec) (api.Job, error) {
	if err := f.act(p, fmt.Sprintf("submit %q", spec.Argv)); err != nil {
		return api.Job{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j := api.Job{ID: strconv.Itoa(len(f.jobs) + 1), Spec: spec, State: api.JobQueued}
	f.jobs = append(f.jobs, j)
	return j, nil
}

func (f *fakeCluster) CancelJob(ctx context.Context, p authz.Principal, id, reason string) (api.Job, error) {
	return api.Job{ID: id}, f.act(p, "cancel "+id+" "+reason)
}

func (f *fakeCluster) CreateToken(ctx context.Context, p authz.Principal, req api.TokenCreate) (api.TokenCreated, error) {
	return api.TokenCreated{Token: api.Token{ID: "fedcba9876543210", Uses: req.Uses}, Join: "ward1:secret-join-string"}, f.act(p, "token")
}

func (f *fakeCluster) RevokeToken(ctx context.Context, p authz.Principal, id string) (api.Token, error) {
	return api.Token{ID: id}, f.act(p, "revoke-token "+id)
}

func (f *fakeCluster) RevokeCert(ctx context.Context, p authz.Principal, serial, reason string) (api.RevokeResult, error) {
	return api.RevokeResult{}, f.act(p, "revoke-cert "+serial)
}

func (f *fakeCluster) RotateCA(ctx context.Context, p authz.Principal, req api.RotateRequest) (api.CAStatus, error) {
	return api.CAStatus{PhaseName: "trust"}, f.act(p, fmt.Sprintf("rotate rollback=%v", req.Rollback))
}

func (f *fakeCluster) MigrateUpgrade(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error) {
	return api.MigrationStatus{}, f.act(p, fmt.Sprintf("upgrade %v", req.Nodes))
}

func (f *fakeCluster) MigrateFinish(ctx context.Context, p authz.Principal, req api.MigrateRequest) (api.MigrationStatus, error) {
	return api.MigrationStatus{}, f.act(p, "finish")
}

func (f *fakeCluster) CheckConnection(ctx context.Context, p authz.Principal, req api.CheckRequest) (*diagnose.Report, error) {
	return &diagnose.Report{Verdict: diagnose.Verdict{Code: diagnose.CodeNotTLS, Message: "plaintext answered", Fix: "use the TLS port"}, Address: req.Address}, f.act(p, "check "+req.Address)
}

func (f *fakeCluster) Record(p authz.Principal, ev audit.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ev.Actor == "" {
		ev.Actor = p.String()
	}
	ev.Via, ev.Source = string(p.Via), p.Source
	if ev.Result == "" {
		ev.Result = "ok"
	}
	f.events = append(f.events, ev)
}

var _ Cluster = (*fakeCluster)(nil)

var testAdmin = authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: "admin"}, Role: authz.RoleAdmin, Via: authz.ViaCert, CertSerial: "0a"}
