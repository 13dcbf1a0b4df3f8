package coordinator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/sched"
	"github.com/wardcluster/ward/internal/store"
)

// Store layout. Keys sort in numeric order because numbers are zero-padded.
const (
	prefixJobs   = "jobs/"
	prefixTasks  = "tasks/"
	prefixLogs   = "logs/"
	prefixNodes  = "nodes/"
	prefixTokens = "tokens/"
	prefixCerts  = "certs/"
	// prefixTruncated marks tasks whose output passed max_output_bytes:
	// truncated/<job>/<task>, written once per task.
	prefixTruncated = "truncated/"
	keyJobSeq       = "meta/job-seq"
	keyCRLNumber    = "meta/crl-number"
)

func jobKey(id string) string    { return prefixJobs + padID(id) }
func logPrefix(id string) string { return prefixLogs + padID(id) + "/" }
func logKey(id string, task, seq int) string {
	return fmt.Sprintf("%s%s/%07d/%09d", prefixLogs, padID(id), task, seq)
}
func truncatedPrefix(id string) string { return prefixTruncated + padID(id) + "/" }
func truncatedKey(id string, task int) string {
	return fmt.Sprintf("%s%07d", truncatedPrefix(id), task)
}
func nodeKey(name string) string   { return prefixNodes + name }
func tokenKey(id string) string    { return prefixTokens + id }
func certKey(serial string) string { return prefixCerts + serial }

// padID zero-pads a numeric job ID so keys sort numerically.
func padID(id string) string {
	if n, err := strconv.ParseUint(id, 10, 64); err == nil {
		return fmt.Sprintf("%012d", n)
	}
	return id
}

// validJobID accepts the decimal job IDs the coordinator hands out.
func validJobID(id string) bool {
	if id == "" || len(id) > 12 || strings.HasPrefix(id, "0") {
		return false
	}
	_, err := strconv.ParseUint(id, 10, 64)
	return err == nil
}

type jobRecord struct {
	ID           string      `json:"id"`
	Spec         api.JobSpec `json:"spec"`
	Priority     int         `json:"priority"`
	Slots        int         `json:"slots"`
	Retries      int         `json:"retries"`
	Submitted    time.Time   `json:"submitted"`
	SubmittedBy  string      `json:"submitted_by"`
	State        string      `json:"state"`
	Finished     time.Time   `json:"finished,omitempty"`
	CancelReason string      `json:"cancel_reason,omitempty"`
	Requeues     int         `json:"requeues,omitempty"`
	CloneOf      string      `json:"clone_of,omitempty"`
	// Consequential: canceled by its own failed task (--cancel-on-failure).
	Consequential bool `json:"consequential,omitempty"`
}

// jobSnapshot copies a job's record under c.mu; it is encoded later,
// outside the lock.
func jobSnapshot(j *sched.Job) jobRecord {
	return jobRecord{
		ID: j.ID, Spec: j.Spec, Priority: int(j.Priority), Slots: j.Slots, Retries: j.Retries,
		Submitted: j.Submitted, SubmittedBy: j.SubmittedBy, State: j.State, Finished: j.Finished,
		CancelReason: j.CancelReason, Requeues: j.Requeues, CloneOf: j.CloneOf, Consequential: j.Consequential,
	}
}

func decodeJob(v []byte) (*sched.Job, error) {
	var r jobRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, err
	}
	return &sched.Job{
		ID: r.ID, Spec: r.Spec, Priority: sched.Priority(r.Priority), Slots: r.Slots, Retries: r.Retries,
		Submitted: r.Submitted, SubmittedBy: r.SubmittedBy, State: r.State, Finished: r.Finished,
		CancelReason: r.CancelReason, Requeues: r.Requeues, CloneOf: r.CloneOf, Consequential: r.Consequential, Tasks: make([]sched.Task, r.Spec.Count),
	}, nil
}

// nodeRecord is an agent's registration. Labels from its token override the
// ones the agent reports.
type nodeRecord struct {
	Name        string            `json:"name"`
	Joined      time.Time         `json:"joined"`
	TokenID     string            `json:"token_id"`
	TokenLabels map[string]string `json:"token_labels,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Slots       int               `json:"slots"`
	Memory      int64             `json:"memory,omitempty"` // bytes the agent offers tasks
	CertSerial  string            `json:"cert_serial"`
	CertExpiry  time.Time         `json:"cert_expiry"`
	CertIssuer  string            `json:"cert_issuer"`
	Drain       bool              `json:"drain,omitempty"`
	Revoked     bool              `json:"revoked,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	// Version is the Ward version the agent reported in its last hello.
	Version string `json:"version,omitempty"`
	// prof is where the node stands with its agent profile (not stored:
	// an agent says what it runs when its session opens).
	prof nodeProfile
}

// tokenRecord is a join token. Only the secret's hash is kept.
type tokenRecord struct {
	ID         string            `json:"id"`
	SecretHash string            `json:"secret_hash"`
	Created    time.Time         `json:"created"`
	Expires    time.Time         `json:"expires"`
	Uses       int               `json:"uses"`
	Used       int               `json:"used"`
	Labels     map[string]string `json:"labels,omitempty"`
	AllowDNS   []string          `json:"allow_dns,omitempty"`
	AllowIPs   []string          `json:"allow_ips,omitempty"`
	Revoked    bool              `json:"revoked,omitempty"`
	CreatedBy  string            `json:"created_by"`
}

func (t *tokenRecord) state(now time.Time) string {
	switch {
	case t.Revoked:
		return "revoked"
	case t.Used >= t.Uses:
		return "used"
	case !now.Before(t.Expires):
		return "expired"
	}
	return "active"
}

func (t *tokenRecord) api(now time.Time) api.Token {
	return api.Token{ID: t.ID, Created: t.Created, Expires: t.Expires, Uses: t.Uses, Used: t.Used, Labels: t.Labels,
		AllowDNS: t.AllowDNS, AllowIPs: t.AllowIPs, Revoked: t.Revoked, State: t.state(now), CreatedBy: t.CreatedBy}
}

// certRecord is every certificate the CA issued, for listing and revocation.
type certRecord struct {
	Serial       string    `json:"serial"`
	Identity     string    `json:"identity"`
	Role         string    `json:"role"`
	Name         string    `json:"name"`
	Issuer       string    `json:"issuer"`
	IssuerSerial string    `json:"issuer_serial"`
	NotBefore    time.Time `json:"not_before"`
	NotAfter     time.Time `json:"not_after"`
	Revoked      bool      `json:"revoked,omitempty"`
	RevokedAt    time.Time `json:"revoked_at,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	// Parent is the serial of the certificate this one renewed (see
	// lineage.go).
	Parent string `json:"parent,omitempty"`
	// SHA256 is the certificate's thumbprint (pki.Fingerprint), which tells
	// it from a certificate minted with the same fields by someone else
	// holding the CA key (see coordinatorCertRecorded). Records written
	// before it have none.
	SHA256 string `json:"sha256,omitempty"`
}

// logRecord is one stored chunk of task output.
// truncatedRecord notes that a task's output passed the limit, in which
// attempt and at how many bytes kept.
type truncatedRecord struct {
	Attempt int `json:"a"`
	Kept    int `json:"kept"`
}

type logRecord struct {
	Attempt   int    `json:"a"`
	Stream    string `json:"s"`
	Data      []byte `json:"d,omitempty"`
	Truncated bool   `json:"tr,omitempty"`
	// AgentSeq is the chunk's number from the agent (api.OutputChunk.Seq),
	// so a chunk sent again after a reconnect is stored once.
	AgentSeq int `json:"n,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", v, err)) // only plain structs are encoded here
	}
	return b
}

func putJSON(key string, v any) store.Op { return store.Put(key, mustJSON(v)) }
