package config

import (
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"time"

	"github.com/wardcluster/ward/internal/pki"
)

// Agent configures `ward agent`.
type Agent struct {
	Version int `json:"version"`
	// DataDir holds the agent's key, certificate, trust bundle and state.
	DataDir string `json:"data_dir"`
	// Name is the node name to request at join (default: the host name).
	Name string `json:"name"`
	// Slots is the task capacity (default: the CPU count).
	Slots int `json:"slots"`
	// Labels are matched against jobs' --label constraints.
	Labels map[string]string `json:"labels"`
	// Coordinators overrides the cluster addresses learned at join; the
	// agent fails over between them.
	Coordinators []string `json:"coordinators"`
	// Pins, when set, must match a certificate in every coordinator chain.
	Pins []string `json:"pins"`
	// KillGrace is the wait between SIGTERM and SIGKILL when a task is
	// canceled or times out.
	KillGrace Duration `json:"kill_grace"`
	// InsecureSkipVerify encrypts without authenticating the coordinator.
	// It exists for migrations only, warns on every start and shows the
	// link as PARTLY.
	InsecureSkipVerify bool `json:"insecure_skip_verify"`
	// InsecurePlaintextCoordinator runs the session without TLS to this
	// address (a coordinator's plaintext migration listener). The agent
	// still proves its identity with its key, but the link is plaintext
	// (NO). Remembered until --upgrade-tls or a coordinator-driven upgrade.
	InsecurePlaintextCoordinator string `json:"insecure_plaintext_coordinator"`
	// Key is where the private key lives: "file" (default) or "tpm".
	Key string `json:"key"`
	// TPMDevice is the TPM character device, or tcp://HOST:PORT for a
	// software TPM (swtpm).
	TPMDevice string `json:"tpm_device"`
	// RevocationPolicy is what to do when the coordinator's CRL cannot be
	// fetched: "soft" (warn) or "hard" (refuse).
	RevocationPolicy string `json:"revocation_policy"`
}

// AgentDefaults returns the documented defaults.
func AgentDefaults() Agent {
	return Agent{
		Version:          FileVersion,
		Slots:            runtime.NumCPU(),
		KillGrace:        Duration(10 * time.Second),
		Key:              "file",
		TPMDevice:        "/dev/tpmrm0",
		RevocationPolicy: "soft",
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
	return p.Err("agent")
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
