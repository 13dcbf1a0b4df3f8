package authz_test

import (
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
)

func TestAllow(t *testing.T) {
	user := pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: "admin"}
	for _, tc := range []struct {
		name    string
		p       authz.Principal
		action  authz.Action
		wantErr string // substring of the message; "" means allowed
	}{
		{"user certificate reads", authz.Principal{ID: user, Via: authz.ViaCert}, authz.Read, ""},
		{"user certificate drains", authz.Principal{ID: user, Via: authz.ViaCert}, authz.NodeDrain, ""},
		{"web session via link", authz.Principal{ID: user, Via: authz.ViaUILink}, authz.JobSubmit, ""},
		{"web session via password", authz.Principal{ID: user, Via: authz.ViaUIPassword}, authz.CARotate, ""},
		{"agent certificate", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleAgent, Name: "n1"}, Via: authz.ViaCert}, authz.Read,
			"is an agent certificate; reading cluster state needs a user"},
		{"coordinator certificate", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleCoordinator, Name: "x"}, Via: authz.ViaCert}, authz.TokenCreate,
			"is a coordinator certificate; the token.create action needs a user"},
		{"other cluster", authz.Principal{ID: pki.ID{Cluster: "c2", Role: pki.RoleUser, Name: "admin"}, Via: authz.ViaCert}, authz.Read,
			`belongs to cluster "c2", not "c1"`},
		{"empty principal", authz.Principal{}, authz.Read, `not "c1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := authz.Allow(tc.p, "c1", tc.action)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed")
			}
			if api.CodeOf(err) != api.CodePermissionDenied || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want PERMISSION_DENIED with %q", err, tc.wantErr)
			}
		})
	}
}
