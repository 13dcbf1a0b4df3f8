package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardcluster/ward/internal/api"
)

func intp(n int) *int { return &n }

func durp(d time.Duration) *api.Duration { g := api.Duration(d); return &g }

func TestParseSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want api.ProfileSetRequest
		err  string
	}{
		{"all", []string{"slots=8", "labels=rack=a,gpu=1", "kill-grace=30s", "revocation-policy=hard"},
			api.ProfileSetRequest{Settings: api.ProfileSettings{Slots: intp(8), Labels: map[string]string{"rack": "a", "gpu": "1"}, KillGrace: durp(30 * time.Second), RevocationPolicy: "hard"}}, ""},
		{"unset", []string{"slots=", "labels="}, api.ProfileSetRequest{Unset: []string{"slots", "labels"}}, ""},
		{"none", nil, api.ProfileSetRequest{}, "at least one"},
		{"unknown", []string{"cores=4"}, api.ProfileSetRequest{}, "settings are"},
		{"twice", []string{"slots=1", "slots=2"}, api.ProfileSetRequest{}, "twice"},
		{"bad slots", []string{"slots=0"}, api.ProfileSetRequest{}, "slots=0"},
		{"bad grace", []string{"kill-grace=soon"}, api.ProfileSetRequest{}, "duration"},
		{"bad policy", []string{"revocation-policy=off"}, api.ProfileSetRequest{}, "soft or hard"},
		{"bad labels", []string{"labels=rack"}, api.ProfileSetRequest{}, "k=v pairs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSet(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	rackA := &api.Profile{Name: "rack-a", Assign: api.ProfileAssignment{Labels: map[string]string{"rack": "a"}}}
	gpuA := &api.Profile{Name: "gpu-a", Assign: api.ProfileAssignment{Labels: map[string]string{"rack": "a", "gpu": "1"}}}
	named := &api.Profile{Name: "z-named", Assign: api.ProfileAssignment{Nodes: []string{"n9"}}}
	all := []*api.Profile{rackA, gpuA, named}
	for _, tc := range []struct {
		node   string
		labels map[string]string
		want   string
	}{
		{"n1", map[string]string{"rack": "a"}, "rack-a"},
		{"n2", map[string]string{"rack": "a", "gpu": "1"}, "gpu-a"},
		{"n9", map[string]string{"rack": "a", "gpu": "1"}, "z-named"},
		{"n3", map[string]string{"rack": "b"}, ""},
		{"n4", nil, ""},
	} {
		got := ""
		if p := Resolve(all, tc.node, tc.labels); p != nil {
			got = p.Name
		}
		if got != tc.want {
			t.Errorf("Resolve(%s, %v) = %q, want %q", tc.node, tc.labels, got, tc.want)
		}
	}
}

func TestApply(t *testing.T) {
	base := Agent{Slots: 2, Labels: map[string]string{"rack": "a"}, KillGrace: 10 * time.Second, RevocationPolicy: "soft"}
	got, err := Apply(base, api.ProfileSettings{Slots: intp(8), Labels: map[string]string{"gpu": "1"}, KillGrace: durp(time.Second), RevocationPolicy: "hard"})
	want := Agent{Slots: 8, Labels: map[string]string{"rack": "a", "gpu": "1"}, KillGrace: time.Second, RevocationPolicy: "hard"}
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("Apply = %+v, %v; want %+v", got, err, want)
	}
	if got, err := Apply(base, api.ProfileSettings{}); err != nil || !cmp.Equal(got, base) {
		t.Fatalf("an empty profile changed %+v into %+v (%v)", base, got, err)
	}
	hard := base
	hard.RevocationPolicy = "hard"
	if got, err := Apply(hard, api.ProfileSettings{Slots: intp(4), RevocationPolicy: "soft"}); err == nil || !strings.Contains(err.Error(), "weaken") || got.Slots != 2 {
		t.Fatalf("soft over a hard agent: %+v, %v; want a refusal that keeps everything", got, err)
	}
}
