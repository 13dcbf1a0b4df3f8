package config

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"github.com/wardcluster/ward/internal/logging"
	"github.com/wardcluster/ward/internal/pki"
)

// Agent configures `ward agent`. Tags and doc comments work as on
// Coordinator.
type Agent struct {
	// Version is the config file format version; this Ward reads 1.
	Version int `json:"version"`
	// DataDir holds the agent's key, certificate, trust bundle and state.
	// Required.
	DataDir string `json:"data_dir" flag:"data"`
	// JoinFile holds the join string from `ward token create` (its last
	// line). It is read only while the data directory holds no node
	// identity: once joined, the agent needs only its data directory, and
	// the file may be deleted.
	JoinFile string `json:"join_file" flag:"join-file"`
	// Name is the node name to request at join (default: the host name).
	Name string `json:"name" flag:"name"`
	// Slots is the task capacity.
	Slots int `json:"slots" flag:"slots" docdefault:"the CPU count"`
	// Memory is the memory this node offers tasks, such as "64GiB"; tasks
	// that reserve memory (--memory) are never placed beyond it. 0 offers
	// none: such tasks are not placed here.
	Memory Size `json:"memory" flag:"memory" docdefault:"the host's total memory"`
	// Labels are matched against jobs' --label constraints.
	Labels map[string]string `json:"labels" flag:"label"`
	// Coordinators overrides the cluster addresses learned at join; the
	// agent fails over between them.
	Coordinators []string `json:"coordinators" flag:"coordinator"`
	// Pins, when set, must match a certificate in every coordinator chain.
	Pins []string `json:"pins" flag:"pin"`
	// KillGrace is the wait between SIGTERM and SIGKILL when a task is
	// canceled or times out.
	KillGrace Duration `json:"kill_grace" flag:"kill-grace"`
	// InsecureSkipVerify encrypts without authenticating the coordinator.
	// It exists for migrations only, warns on every start and shows the
	// link as PARTLY.
	InsecureSkipVerify bool `json:"insecure_skip_verify" flag:"insecure-skip-verify"`
	// InsecurePlaintextCoordinator runs the session without TLS to this
	// address (a coordinator's plaintext migration listener). The agent
	// still proves its identity with its key, but the link is plaintext
	// (NO). Remembered until --upgrade-tls or a coordinator-driven upgrade.
	InsecurePlaintextCoordinator string `json:"insecure_plaintext_coordinator" flag:"insecure-plaintext-coordinator"`
	// Key is where the private key lives: "file" (default) or "tpm".
	Key string `json:"key" flag:"key"`
	// TPMDevice is the TPM character device, or tcp://HOST:PORT for a
	// software TPM (swtpm).
	TPMDevice string `json:"tpm_device" flag:"tpm-device"`
	// RevocationPolicy is what to do when the coordinator's CRL cannot be
	// fetched: "soft" (warn) or "hard" (refuse).
	RevocationPolicy string `json:"revocation_policy" flag:"revocation-policy"`
	// RunAsUser runs each task as its submitter's local account (the Ward
	// user's name, or what user_map_file maps it to): uid, gid and
	// supplementary groups are set before exec. The agent must run as
	// root. A task whose user has no account on this node fails with
	// USER_UNKNOWN_ON_NODE. Without it, tasks run as the agent's account.
	RunAsUser bool `json:"run_as_user" flag:"run-as-user"`
	// UserMapFile maps Ward users to local accounts, one "WARD_USER
	// LOCAL_ACCOUNT" per line; users it does not name use the account of
	// the same name. It must not be writable by group or others.
	UserMapFile string `json:"user_map_file" flag:"user-map"`
	// RunAsAllowRoot lets a Ward user map to root. INSECURE: off by
	// default, so root is never the mapped account; warned on every start.
	RunAsAllowRoot bool `json:"run_as_allow_root" flag:"run-as-allow-root"`
	// LogLevel is the least severe level logged: debug, info, warn or
	// error.
	LogLevel string `json:"log_level" flag:"log-level"`
	// LogFormat is how log lines are written to standard error (journald
	// under systemd): text (key=value) or json (one object per line).
	LogFormat string `json:"log_format" flag:"log-format"`
}

// AgentDefaults returns the documented defaults.
func AgentDefaults() Agent {
	return Agent{
		Version:          FileVersion,
		Slots:            runtime.NumCPU(),
		Memory:           Size(HostMemory()),
		KillGrace:        Duration(10 * time.Second),
		Key:              "file",
		TPMDevice:        "/dev/tpmrm0",
		RevocationPolicy: "soft",
		LogLevel:         "info",
		LogFormat:        "text",
	}
}

// LoadAgent reads a config file over the defaults.
func LoadAgent(path string) (Agent, error) {
	a := AgentDefaults()
	a.Version = 0
	if err := loadStrict(path, &a, &a.Version); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// Validate reports every problem in a at once.
func (a *Agent) Validate() error {
	var p Problems
	if a.DataDir == "" {
		p.Addf("data_dir (--data)", "is required")
	} else if abs, err := filepath.Abs(a.DataDir); err == nil {
		a.DataDir = abs
	}
	if a.Name != "" {
		if err := pki.ValidName("node", a.Name); err != nil {
			p.Addf("name (--name)", "%v", err)
		}
	}
	if a.Slots < 1 || a.Slots > 100000 {
		p.Addf("slots (--slots)", "%d must be between 1 and 100000", a.Slots)
	}
	if a.Memory < 0 || a.Memory > 1<<50 {
		p.Addf("memory (--memory)", "%s must be between 0 and 1PiB", a.Memory)
	}
	for k, v := range a.Labels {
		if err := ValidLabel(k, v); err != nil {
			p.Addf("labels (--label)", "%v", err)
		}
	}
	for _, c := range a.Coordinators {
		if _, port, err := net.SplitHostPort(c); err != nil || port == "" {
			p.Addf("coordinators (--coordinator)", "%q must be HOST:PORT", c)
		}
	}
	if !a.RunAsUser && a.UserMapFile != "" {
		p.Addf("user_map_file (--user-map)", "is set but run_as_user (--run-as-user) is not: the map would not be used")
	}
	if !a.RunAsUser && a.RunAsAllowRoot {
		p.Addf("run_as_allow_root (--run-as-allow-root)", "is set but run_as_user (--run-as-user) is not")
	}
	if a.InsecurePlaintextCoordinator != "" {
		if _, port, err := net.SplitHostPort(a.InsecurePlaintextCoordinator); err != nil || port == "" {
			p.Addf("insecure_plaintext_coordinator (--insecure-plaintext-coordinator)", "%q must be HOST:PORT", a.InsecurePlaintextCoordinator)
		}
	}
	if _, err := pki.ParsePins(a.Pins); err != nil {
		p.Addf("pins (--pin)", "%v", err)
	}
	if a.KillGrace.D() < 0 {
		p.Addf("kill_grace", "must not be negative")
	}
	if a.Key != "file" && a.Key != "tpm" {
		p.Addf("key (--key)", "%q must be \"file\" or \"tpm\"", a.Key)
	}
	if a.RevocationPolicy != "soft" && a.RevocationPolicy != "hard" {
		p.Addf("revocation_policy", "%q must be \"soft\" or \"hard\"", a.RevocationPolicy)
	}
	checkLogging(&p, a.LogLevel, a.LogFormat)
	return p.Err("agent")
}

// checkLogging validates log_level and log_format.
func checkLogging(p *Problems, level, format string) {
	if _, err := logging.ParseLevel(level); err != nil {
		p.Addf("log_level (--log-level)", "%v", err)
	}
	if err := logging.CheckFormat(format); err != nil {
		p.Addf("log_format (--log-format)", "%v", err)
	}
}

// ValidLabel checks a label key and value.
func ValidLabel(k, v string) error {
	if k == "" || len(k) > 63 || len(v) > 253 {
		return fmt.Errorf("label %q=%q: keys are 1-63 characters, values at most 253", k, v)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '/') {
			return fmt.Errorf("label key %q: character %q is not allowed", k, r)
		}
	}
	return nil
}
