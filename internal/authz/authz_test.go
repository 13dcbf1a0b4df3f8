package authz_test

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/pki"
)

func user(name string, role authz.Role) authz.Principal {
	return authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: name}, Role: role, Via: authz.ViaCert}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name      string
		p         authz.Principal
		action    authz.Action
		wantScope authz.Scope
		wantCode  api.Code
		wantErr   string // substring of the message
	}{
		{"admin rotates the CA", user("admin", authz.RoleAdmin), authz.CARotate, authz.ScopeAll, "", ""},
		{"operator drains", user("op", authz.RoleOperator), authz.NodeDrain, authz.ScopeAll, "", ""},
		{"operator may not manage users", user("op", authz.RoleOperator), authz.UserManage, 0, api.CodePermissionDenied,
			"spiffe://c1/user/op has role operator; managing users needs role admin"},
		{"operator may not rotate the CA", user("op", authz.RoleOperator), authz.CARotate, 0, api.CodePermissionDenied, "needs role admin"},
		{"submitter submits", user("sub", authz.RoleSubmitter), authz.JobSubmit, authz.ScopeAll, "", ""},
		{"submitter reads its own jobs", user("sub", authz.RoleSubmitter), authz.JobRead, authz.ScopeOwn, "", ""},
		{"submitter cancels its own jobs", user("sub", authz.RoleSubmitter), authz.JobCancel, authz.ScopeOwn, "", ""},
		{"submitter may not create tokens", user("sub", authz.RoleSubmitter), authz.TokenCreate, 0, api.CodePermissionDenied,
			"has role submitter; creating join tokens needs role admin or operator"},
		{"submitter may not revoke nodes", user("sub", authz.RoleSubmitter), authz.NodeRevoke, 0, api.CodePermissionDenied, "revoking a node needs role admin or operator"},
		{"viewer reads every job", user("v", authz.RoleViewer), authz.JobRead, authz.ScopeAll, "", ""},
		{"viewer may not submit", user("v", authz.RoleViewer), authz.JobSubmit, 0, api.CodePermissionDenied,
			"has role viewer; submitting jobs needs role admin, operator or submitter"},
		{"viewer may not cancel", user("v", authz.RoleViewer), authz.JobCancel, 0, api.CodePermissionDenied, "canceling jobs needs role admin, operator or submitter"},
		{"only admin backs up the store", user("op", authz.RoleOperator), authz.StoreBackup, 0, api.CodePermissionDenied, "backing up the store needs role admin"},
		{"only admin reads debug info", user("op", authz.RoleOperator), authz.DebugInfo, 0, api.CodePermissionDenied, "needs role admin"},
		{"user without a role", user("bob", ""), authz.StatusRead, 0, api.CodePermissionDenied,
			"spiffe://c1/user/bob has no role"},
		{"web session via link keeps the role", authz.Principal{ID: user("sub", "").ID, Role: authz.RoleSubmitter, Via: authz.ViaUILink}, authz.CARotate, 0, api.CodePermissionDenied, "needs role admin"},
		{"agent renews itself", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleAgent, Name: "n1"}, Via: authz.ViaCert}, authz.CertRenew, authz.ScopeAll, "", ""},
		{"agent certificate reads", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleAgent, Name: "n1"}, Via: authz.ViaCert}, authz.StatusRead, 0, api.CodePermissionDenied,
			"is an agent certificate; reading the cluster's status needs a user with role admin, operator, submitter or viewer"},
		{"coordinator scrapes metrics", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleCoordinator, Name: "x"}, Via: authz.ViaCert}, authz.MetricsRead, authz.ScopeAll, "", ""},
		{"coordinator certificate", authz.Principal{ID: pki.ID{Cluster: "c1", Role: pki.RoleCoordinator, Name: "x"}, Via: authz.ViaCert}, authz.TokenCreate, 0, api.CodePermissionDenied,
			"is a coordinator certificate; creating join tokens needs a user"},
		{"other cluster", authz.Principal{ID: pki.ID{Cluster: "c2", Role: pki.RoleUser, Name: "admin"}, Role: authz.RoleAdmin, Via: authz.ViaCert}, authz.StatusRead, 0, api.CodePermissionDenied,
			`belongs to cluster "c2", not "c1"`},
		{"empty principal", authz.Principal{}, authz.StatusRead, 0, api.CodePermissionDenied, `not "c1"`},
		{"public needs nobody", authz.Principal{}, authz.Public, authz.ScopeAll, "", ""},
		{"agents-only action refused to a user", user("admin", authz.RoleAdmin), authz.StagingAttempt, 0, api.CodePermissionDenied, "is for agents only"},
		{"unknown action refused", user("admin", authz.RoleAdmin), authz.Action("nope"), 0, api.CodePermissionDenied, "no rule"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scope, err := authz.Decide(tc.p, "c1", tc.action)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if scope != tc.wantScope {
					t.Fatalf("scope %d, want %d", scope, tc.wantScope)
				}
				return
			}
			if err == nil {
				t.Fatal("allowed")
			}
			if api.CodeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want %s with %q", err, tc.wantCode, tc.wantErr)
			}
		})
	}
}

// Every action has a rule, and every rule but Public's admits admin: the
// admin role may do everything.
func TestTableIsComplete(t *testing.T) {
	for _, a := range authz.Actions() {
		r, _ := authz.RuleOf(a)
		if r.Describe == "" {
			t.Errorf("%s: no description for refusals", a)
		}
		agentsOnly := r.Agents && len(r.Roles()) == 0 // an agent's own protocol
		if !r.Public && !agentsOnly && !authz.Can(authz.RoleAdmin, a) {
			t.Errorf("%s: admin may not perform it", a)
		}
	}
}

func TestRoleFromCert(t *testing.T) {
	cert := func(uris ...string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	uid := func(name string) pki.ID { return pki.ID{Cluster: "c1", Role: pki.RoleUser, Name: name} }
	for _, tc := range []struct {
		name string
		id   pki.ID
		cert *x509.Certificate
		want authz.Role
	}{
		{"role SAN", uid("ann"), cert("spiffe://c1/user/ann", "urn:ward:role:submitter"), authz.RoleSubmitter},
		{"admin credential before roles", uid("admin"), cert("spiffe://c1/user/admin"), authz.RoleAdmin},
		{"admin credential with a role", uid("admin"), cert("spiffe://c1/user/admin", "urn:ward:role:admin"), authz.RoleAdmin},
		{"other user without a role", uid("bob"), cert("spiffe://c1/user/bob"), ""},
		{"unknown role", uid("bob"), cert("spiffe://c1/user/bob", "urn:ward:role:root"), ""},
		{"two roles are none", uid("bob"), cert("spiffe://c1/user/bob", "urn:ward:role:viewer", "urn:ward:role:admin"), ""},
		{"agent with a role SAN has none", pki.ID{Cluster: "c1", Role: pki.RoleAgent, Name: "n"}, cert("spiffe://c1/agent/n", "urn:ward:role:admin"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := authz.RoleFromCert(tc.id, tc.cert); got != tc.want {
				t.Fatalf("role %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range authz.Roles {
		if got, err := authz.ParseRole(string(r)); err != nil || got != r {
			t.Fatalf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	_, err := authz.ParseRole("root")
	if api.CodeOf(err) != api.CodeInvalidArgument || !strings.Contains(err.Error(), "admin, operator, submitter, viewer") {
		t.Fatalf("got %v", err)
	}
}
