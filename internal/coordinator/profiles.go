package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/profile"
	"github.com/wardcluster/ward/internal/store"
)

const prefixProfiles = "profiles/"

func profileKey(name string) string { return prefixProfiles + name }

// nodeProfile is where a node stands with its profile: in memory only.
// After a coordinator restart the agent's Hello says what it runs.
type nodeProfile struct {
	name  string // the profile the node should run ("" for none)
	rev   int64
	state string // api.ProfileApplied, ProfilePending or ProfileFailed
	err   string
	// applied is what the agent last said it runs with: a refused push
	// leaves it as it was.
	applied appliedProfile
}

type appliedProfile struct {
	name   string
	slots  int
	labels map[string]string
}

// target sets the profile a node should run, keeping what it runs now.
func (np *nodeProfile) target(name string, rev int64) {
	np.name, np.rev, np.state, np.err = name, rev, api.ProfilePending, ""
}

// restoreProfiles loads the profiles. Callers hold c.mu.
func (c *Coordinator) restoreProfiles(ctx context.Context) error {
	return c.st.Scan(ctx, prefixProfiles, func(r store.Record) error {
		var p api.Profile
		if err := json.Unmarshal(r.Value, &p); err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		c.profiles[p.Name] = &p
		return nil
	})
}

// baseLabels are a node's own labels and its token's: what profile
// assignments select on (never a profile's own labels).
func baseLabels(n *nodeRecord) map[string]string {
	out := make(map[string]string, len(n.Labels)+len(n.TokenLabels))
	for k, v := range n.Labels {
		out[k] = v
	}
	for k, v := range n.TokenLabels {
		out[k] = v
	}
	return out
}

// effectiveSlots is a node's capacity: its applied profile's, or its own.
func effectiveSlots(n *nodeRecord) int {
	if a := n.prof.applied; a.name != "" && a.slots > 0 {
		return a.slots
	}
	return n.Slots
}

func (c *Coordinator) profileListLocked() []*api.Profile {
	out := make([]*api.Profile, 0, len(c.profiles))
	for _, p := range c.profiles {
		out = append(out, p)
	}
	return out
}

// wantedProfileLocked is the profile the node should run now (nil: none).
func (c *Coordinator) wantedProfileLocked(rec *nodeRecord) *api.Profile {
	if len(c.profiles) == 0 {
		return nil
	}
	return profile.Resolve(c.profileListLocked(), rec.Name, baseLabels(rec))
}

// openProfileLocked is the push a node gets when its session opens: its
// profile, sent every time (an agent that restarted runs without it, and
// its answer says the values it runs with), or, when it should have none
// but reports one, the push that removes it. Callers hold c.mu.
func (c *Coordinator) openProfileLocked(rec *nodeRecord, h *api.Hello) *api.ProfilePush {
	want := c.wantedProfileLocked(rec)
	// What it ran before is not known to hold: it may have restarted.
	rec.prof.applied = appliedProfile{}
	if want == nil {
		if h.Profile == "" {
			rec.prof = nodeProfile{}
			return nil
		}
		rec.prof.target("", 0)
		return &api.ProfilePush{}
	}
	rec.prof.target(want.Name, want.Revision)
	return &api.ProfilePush{Name: want.Name, Revision: want.Revision, Settings: want.Settings}
}

// pushProfilesLocked sends each connected node whose profile changed (or
// whose profile's settings did) the new one; a node that is away gets it
// when it connects. Callers hold c.mu.
func (c *Coordinator) pushProfilesLocked() {
	for name, rec := range c.nodes {
		want := c.wantedProfileLocked(rec)
		var push api.ProfilePush
		if want != nil {
			push = api.ProfilePush{Name: want.Name, Revision: want.Revision, Settings: want.Settings}
		}
		if rec.prof.name == push.Name && rec.prof.rev == push.Revision {
			continue // as wanted: applied, pending or refused
		}
		rec.prof.target(push.Name, push.Revision)
		if s := c.sessions[name]; s != nil {
			s.send(api.FrameProfile, push)
		}
	}
}

// profileResult records an agent's answer to a push.
func (c *Coordinator) profileResult(s *session, body []byte) {
	var m api.ProfileResult
	if err := api.DecodeFrame(api.FrameProfileResult, body, &m); err != nil {
		c.log.Warn("bad profile result", "node", s.node, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.nodes[s.node]
	if rec == nil || m.Name != rec.prof.name || m.Revision != rec.prof.rev {
		return // an answer to an older push; the newer one is on its way
	}
	switch {
	case m.Error != "":
		rec.prof.state, rec.prof.err = api.ProfileFailed, m.Error
		c.log.Warn("an agent refused its profile", "node", s.node, "profile", m.Name, "revision", m.Revision, "err", m.Error)
	case m.Name == "":
		rec.prof = nodeProfile{}
	default:
		rec.prof.state, rec.prof.err = api.ProfileApplied, ""
		rec.prof.applied = appliedProfile{name: m.Name, slots: m.Slots}
		if p := c.profiles[m.Name]; p != nil {
			rec.prof.applied.labels = p.Settings.Labels
		}
		c.connLog("agent profile applied", "node", s.node, "profile", m.Name, "revision", m.Revision, "slots", m.Slots)
	}
	c.cl.UpsertNode(rec.Name, effectiveSlots(rec), effectiveLabels(rec))
	c.poke()
}

// SetProfile creates a profile or changes its settings, and pushes it to
// the nodes it applies to.
func (c *Coordinator) SetProfile(ctx context.Context, p authz.Principal, name string, req api.ProfileSetRequest) (api.Profile, error) {
	if err := c.allow(p, authz.ProfileSet); err != nil {
		return api.Profile{}, err
	}
	if err := profile.CheckName(name); err != nil {
		return api.Profile{}, api.Errorf(api.CodeInvalidArgument, "", "%v", err)
	}
	for _, k := range req.Unset {
		if !slices.Contains(profile.Keys, k) {
			return api.Profile{}, api.Errorf(api.CodeInvalidArgument, "settings are "+strings.Join(profile.Keys, ", "), "cannot unset %q", k)
		}
	}
	if err := profile.Check(req.Settings); err != nil {
		return api.Profile{}, api.Errorf(api.CodeInvalidArgument, "see `ward profile set --help`", "%v", err)
	}
	out, err := c.changeProfile(p, name, true, func(pr *api.Profile) { pr.Settings = profile.Merge(pr.Settings, req) })
	if err == nil {
		js, _ := json.Marshal(out.Settings)
		c.Record(p, audit.Event{Type: "profile.set", Target: name, Detail: map[string]string{"settings": string(js), "revision": fmt.Sprint(out.Revision)}})
	}
	return out, err
}

// AssignProfile sets which nodes a profile applies to (it replaces the
// earlier assignment) and pushes the change.
func (c *Coordinator) AssignProfile(ctx context.Context, p authz.Principal, name string, a api.ProfileAssignment) (api.Profile, error) {
	if err := c.allow(p, authz.ProfileAssign); err != nil {
		return api.Profile{}, err
	}
	if len(a.Labels) == 0 && len(a.Nodes) == 0 {
		return api.Profile{}, api.Errorf(api.CodeInvalidArgument, "give --label k=v or node names", "an assignment needs labels or nodes")
	}
	c.mu.Lock()
	for _, n := range a.Nodes {
		if c.nodes[n] == nil {
			c.mu.Unlock()
			return api.Profile{}, api.Errorf(api.CodeNotFound, "list nodes with `ward node ls`", "no node %s", n)
		}
	}
	c.mu.Unlock()
	out, err := c.changeProfile(p, name, false, func(pr *api.Profile) { pr.Assign = a })
	if err == nil {
		c.Record(p, audit.Event{Type: "profile.assign", Target: name, Detail: map[string]string{"labels": fmt.Sprint(a.Labels), "nodes": strings.Join(a.Nodes, ","), "matched": strings.Join(out.Nodes, ",")}})
	}
	return out, err
}

// changeProfile applies change to a profile (creating it when create is
// set), makes it durable, and pushes it to the nodes concerned.
func (c *Coordinator) changeProfile(p authz.Principal, name string, create bool, change func(*api.Profile)) (api.Profile, error) {
	c.mu.Lock()
	pr := c.profiles[name]
	if pr == nil && !create {
		c.mu.Unlock()
		return api.Profile{}, api.Errorf(api.CodeNotFound, "create it first with `ward profile set "+name+" KEY=VALUE`", "no profile %s", name)
	}
	next := api.Profile{Name: name}
	if pr != nil {
		next = *pr
	}
	change(&next)
	next.Revision++
	next.Updated, next.UpdatedBy = c.now().UTC(), p.String()
	c.profiles[name] = &next
	c.pushProfilesLocked()
	out := c.profileViewLocked(&next)
	c.mu.Unlock()
	return out, c.commitWait(putJSON(profileKey(name), next))
}

// DeleteProfile removes a profile; its nodes go back to their own
// settings (or to another profile that applies to them).
func (c *Coordinator) DeleteProfile(ctx context.Context, p authz.Principal, name string) error {
	if err := c.allow(p, authz.ProfileSet); err != nil {
		return err
	}
	c.mu.Lock()
	if c.profiles[name] == nil {
		c.mu.Unlock()
		return api.Errorf(api.CodeNotFound, "list profiles with `ward profile ls`", "no profile %s", name)
	}
	delete(c.profiles, name)
	c.pushProfilesLocked()
	c.mu.Unlock()
	c.Record(p, audit.Event{Type: "profile.delete", Target: name})
	return c.commitWait(store.Delete(profileKey(name)))
}

// commitWait makes one write durable before the caller answers.
func (c *Coordinator) commitWait(op store.Op) error {
	done := make(chan error, 1)
	c.journal.Commit([]store.Op{op}, func(err error) { done <- err })
	if err := <-done; err != nil {
		return api.Errorf(api.CodeUnavailable, "retry once the coordinator has restarted; its log names the store error", "the change could not be stored: %v", err)
	}
	return nil
}

// profileViewLocked is a profile with the nodes it applies to now.
func (c *Coordinator) profileViewLocked(pr *api.Profile) api.Profile {
	out := *pr
	out.Nodes = nil
	for name, rec := range c.nodes {
		if rec.prof.name == pr.Name {
			out.Nodes = append(out.Nodes, name)
		}
	}
	sort.Strings(out.Nodes)
	return out
}

// Profiles lists every profile with the nodes it applies to.
func (c *Coordinator) Profiles(ctx context.Context, p authz.Principal) ([]api.Profile, error) {
	if err := c.allow(p, authz.ProfileRead); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]api.Profile, 0, len(c.profiles))
	for _, pr := range c.profiles {
		out = append(out, c.profileViewLocked(pr))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c *Coordinator) apiProfiles(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[[]api.Profile](w)(c.Profiles(r.Context(), p))
}

func (c *Coordinator) apiProfileSet(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.ProfileSetRequest
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.Profile](w)(c.SetProfile(r.Context(), p, r.PathValue("name"), req))
}

func (c *Coordinator) apiProfileAssign(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.ProfileAssignment
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.Profile](w)(c.AssignProfile(r.Context(), p, r.PathValue("name"), req))
}

func (c *Coordinator) apiProfileDelete(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	if err := c.DeleteProfile(r.Context(), p, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
