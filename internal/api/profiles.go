package api

import "time"

// ProfileSettings are the agent settings a profile sets. A field left
// empty (nil) keeps the agent's own setting.
type ProfileSettings struct {
	Slots            *int              `json:"slots,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	KillGrace        *Duration         `json:"kill_grace,omitempty"`
	RevocationPolicy string            `json:"revocation_policy,omitempty"` // soft or hard
}

// ProfileAssignment says which nodes a profile applies to: the nodes
// named, and the nodes whose own labels (from the agent and its join
// token) include every label given.
type ProfileAssignment struct {
	Labels map[string]string `json:"labels,omitempty"`
	Nodes  []string          `json:"nodes,omitempty"`
}

// Profile is a named set of agent settings, pushed by the coordinator over
// the live session to the nodes assigned to it and applied without a
// restart (`ward profile set|assign|ls|rm`).
type Profile struct {
	Name     string            `json:"name"`
	Settings ProfileSettings   `json:"settings"`
	Assign   ProfileAssignment `json:"assign"`
	// Revision rises with every change; a node reports the revision it
	// applied.
	Revision  int64     `json:"revision"`
	Updated   time.Time `json:"updated,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"`
	// Nodes, in listings: the nodes it applies to now.
	Nodes []string `json:"nodes,omitempty"`
}

// ProfileSetRequest changes a profile's settings (PUT /v1/profiles/{name}),
// creating it if needed. Set fields replace the profile's; Unset names
// settings to remove (slots, labels, kill-grace, revocation-policy).
type ProfileSetRequest struct {
	Settings ProfileSettings `json:"settings"`
	Unset    []string        `json:"unset,omitempty"`
}

// Profile states of a node, as `ward node ls` shows them.
const (
	ProfileApplied = "applied" // the agent runs with the profile's revision
	ProfilePending = "pending" // pushed, or to be pushed when the agent connects
	ProfileFailed  = "failed"  // the agent refused it; ProfileError says why
)

// ProfilePush is sent to an agent (FrameProfile) when its profile or the
// profile's settings change, and when its session opens. An empty Name
// removes the profile: the agent goes back to its own settings.
type ProfilePush struct {
	Name     string          `json:"name"`
	Revision int64           `json:"revision"`
	Settings ProfileSettings `json:"settings"`
}

// ProfileResult is the agent's answer to a push (FrameProfileResult): the
// settings it runs with now, or why it refused the profile (and kept what
// it had).
type ProfileResult struct {
	Name             string            `json:"name"`
	Revision         int64             `json:"revision"`
	Error            string            `json:"error,omitempty"`
	Slots            int               `json:"slots"`
	Labels           map[string]string `json:"labels,omitempty"`
	KillGrace        Duration          `json:"kill_grace"`
	RevocationPolicy string            `json:"revocation_policy"`
}
