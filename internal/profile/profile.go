// Package profile is the logic of agent profiles, apart from any network:
// reading `ward profile set` arguments, checking settings, choosing the
// profile a node gets, and an agent's settings with a profile applied.
// The coordinator pushes profiles over agent sessions; the agent applies
// them without a restart.
package profile

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
)

// Setting names, as `ward profile set` takes them.
const (
	KeySlots            = "slots"
	KeyLabels           = "labels"
	KeyKillGrace        = "kill-grace"
	KeyRevocationPolicy = "revocation-policy"
)

// Keys are the settings a profile can hold.
var Keys = []string{KeySlots, KeyLabels, KeyKillGrace, KeyRevocationPolicy}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CheckName accepts profile names: lower-case letters, digits, '.', '_'
// and '-', at most 63 characters.
func CheckName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("profile name %q: use lower-case letters, digits, '.', '_' and '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// ParseSet reads `ward profile set` arguments: KEY=VALUE for each setting
// to set, and KEY= (empty) for each to remove. labels takes k=v pairs
// separated by commas.
func ParseSet(args []string) (api.ProfileSetRequest, error) {
	var req api.ProfileSetRequest
	if len(args) == 0 {
		return req, fmt.Errorf("give at least one setting: %s=VALUE", strings.Join(Keys, "=…, "))
	}
	seen := map[string]bool{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !slices.Contains(Keys, k) {
			return req, fmt.Errorf("%q: settings are %s, each as KEY=VALUE (KEY= removes it)", a, strings.Join(Keys, ", "))
		}
		if seen[k] {
			return req, fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		if v == "" {
			req.Unset = append(req.Unset, k)
			continue
		}
		s := &req.Settings
		switch k {
		case KeySlots:
			n, err := strconv.Atoi(v)
			if err != nil {
				return req, fmt.Errorf("slots=%s: not a number", v)
			}
			s.Slots = &n
		case KeyLabels:
			s.Labels = map[string]string{}
			for _, kv := range strings.Split(v, ",") {
				lk, lv, ok := strings.Cut(kv, "=")
				if !ok || lk == "" {
					return req, fmt.Errorf("labels=%s: give k=v pairs separated by commas, such as labels=rack=a,gpu=1", v)
				}
				s.Labels[lk] = lv
			}
		case KeyKillGrace:
			d, err := time.ParseDuration(v)
			if err != nil {
				return req, fmt.Errorf("kill-grace=%s: a duration such as 30s", v)
			}
			g := api.Duration(d)
			s.KillGrace = &g
		case KeyRevocationPolicy:
			s.RevocationPolicy = v
		}
	}
	return req, Check(req.Settings)
}

// Check validates settings, naming the key at fault.
func Check(s api.ProfileSettings) error {
	if s.Slots != nil && (*s.Slots < 1 || *s.Slots > 100000) {
		return fmt.Errorf("slots=%d: use 1 to 100000", *s.Slots)
	}
	if s.KillGrace != nil && (s.KillGrace.D() < 0 || s.KillGrace.D() > time.Hour) {
		return fmt.Errorf("kill-grace=%s: use 0s to 1h", s.KillGrace.D())
	}
	if s.RevocationPolicy != "" && s.RevocationPolicy != "soft" && s.RevocationPolicy != "hard" {
		return fmt.Errorf("revocation-policy=%s: use soft or hard", s.RevocationPolicy)
	}
	for k := range s.Labels {
		if k == "" || strings.ContainsAny(k, "=,") {
			return fmt.Errorf("labels: %q is not a label key", k)
		}
	}
	return nil
}

// Merge applies a set request to a profile's settings.
func Merge(s api.ProfileSettings, req api.ProfileSetRequest) api.ProfileSettings {
	n := req.Settings
	if n.Slots != nil {
		s.Slots = n.Slots
	}
	if n.Labels != nil {
		s.Labels = n.Labels
	}
	if n.KillGrace != nil {
		s.KillGrace = n.KillGrace
	}
	if n.RevocationPolicy != "" {
		s.RevocationPolicy = n.RevocationPolicy
	}
	for _, k := range req.Unset {
		switch k {
		case KeySlots:
			s.Slots = nil
		case KeyLabels:
			s.Labels = nil
		case KeyKillGrace:
			s.KillGrace = nil
		case KeyRevocationPolicy:
			s.RevocationPolicy = ""
		}
	}
	return s
}

// Matches reports whether a profile's assignment takes in the node with
// these labels (its own and its token's, never a profile's).
func Matches(a api.ProfileAssignment, node string, labels map[string]string) bool {
	if slices.Contains(a.Nodes, node) {
		return true
	}
	if len(a.Labels) == 0 {
		return false
	}
	for k, v := range a.Labels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Resolve picks the profile for a node: one that names it wins over ones
// that select it by labels; among those, the one with more labels (the
// more specific); then the first by name. nil when none applies.
func Resolve(profiles []*api.Profile, node string, labels map[string]string) *api.Profile {
	var best *api.Profile
	rank := func(p *api.Profile) int {
		if slices.Contains(p.Assign.Nodes, node) {
			return 1 << 20
		}
		return len(p.Assign.Labels)
	}
	sorted := slices.Clone(profiles)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, p := range sorted {
		if !Matches(p.Assign, node, labels) {
			continue
		}
		if best == nil || rank(p) > rank(best) {
			best = p
		}
	}
	return best
}

// Agent is the settings of an agent that a profile can change.
type Agent struct {
	Slots            int
	Labels           map[string]string
	KillGrace        time.Duration
	RevocationPolicy string
}

// Apply is base (the agent's own configuration) with the settings of a
// profile. A profile may make revocation checking stricter, never weaker:
// an agent configured hard refuses soft, so a compromised or mistaken
// central setting cannot turn off its refusal of unverifiable coordinators.
func Apply(base Agent, s api.ProfileSettings) (Agent, error) {
	if err := Check(s); err != nil {
		return base, err
	}
	out := base
	if s.Slots != nil {
		out.Slots = *s.Slots
	}
	if s.Labels != nil {
		out.Labels = make(map[string]string, len(base.Labels)+len(s.Labels))
		for k, v := range base.Labels {
			out.Labels[k] = v
		}
		for k, v := range s.Labels {
			out.Labels[k] = v
		}
	}
	if s.KillGrace != nil {
		out.KillGrace = s.KillGrace.D()
	}
	if s.RevocationPolicy != "" {
		if base.RevocationPolicy == "hard" && s.RevocationPolicy == "soft" {
			return base, fmt.Errorf("revocation-policy=soft would weaken this agent's own revocation_policy (hard): a profile may make it stricter, never weaker; change the agent's configuration to allow soft")
		}
		out.RevocationPolicy = s.RevocationPolicy
	}
	return out, nil
}
