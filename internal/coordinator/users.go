package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/enroll"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/store"
)

const prefixUsers = "users/"

func userKey(name string) string { return prefixUsers + name }

// A user's one-time login is a bearer secret: its life is bounded.
const (
	defaultLoginTTL = 24 * time.Hour
	maxLoginTTL     = 30 * 24 * time.Hour
)

const patternLogin = "POST " + api.PathLogin

// userRecord is a person with a role. The role itself lives in the user's
// certificates; the record says which role the next login gets, holds the
// pending one-time login (its secret's hash only) and the history.
type userRecord struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// The latest one-time login (its secret's hash only); LoginUsed once
	// it gave a certificate.
	TokenID      string    `json:"token_id,omitempty"`
	SecretHash   string    `json:"secret_hash,omitempty"`
	LoginExpires time.Time `json:"login_expires,omitzero"`
	LoginUsed    bool      `json:"login_used,omitempty"`
	LastLogin    time.Time `json:"last_login,omitzero"`
	Removed      time.Time `json:"removed,omitzero"`
}

func (u *userRecord) state(now time.Time) string {
	switch {
	case !u.Removed.IsZero():
		return "removed"
	case !u.LoginUsed && now.Before(u.LoginExpires):
		return "invited"
	case !u.LoginUsed:
		return "invite_expired"
	}
	return "active"
}

func (c *Coordinator) userID(name string) pki.ID {
	return pki.ID{Cluster: c.cfg.Cluster, Role: pki.RoleUser, Name: name}
}

// inviteTerms checks what a new login asks for: the role, then how long
// the one-time login stays usable.
func inviteTerms(roleName string, d api.Duration) (authz.Role, time.Duration, error) {
	role, err := authz.ParseRole(roleName)
	if err != nil {
		return role, 0, err
	}
	ttl, err := loginTTL(d)
	return role, ttl, err
}

func loginTTL(d api.Duration) (time.Duration, error) {
	ttl := d.D()
	if ttl == 0 {
		ttl = defaultLoginTTL
	}
	if ttl < time.Minute || ttl > maxLoginTTL {
		return 0, api.Errorf(api.CodeInvalidArgument, "use a --ttl between 1m and 720h", "login TTL %s is outside 1m..720h", ttl)
	}
	return ttl, nil
}

// newInvite gives u a fresh one-time login valid for ttl and returns the
// user join string that carries it.
func (c *Coordinator) newInvite(u *userRecord, ttl time.Duration, now time.Time) (string, error) {
	id, secret, err := enroll.NewToken()
	if err != nil {
		return "", err
	}
	u.TokenID, u.SecretHash, u.LoginExpires, u.LoginUsed = id, enroll.HashSecret(secret), now.Add(ttl).UTC(), false
	return c.joinString(id, secret, u.Name).String(), nil
}

func (c *Coordinator) apiUserAdd(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return created(c, w, r, func(req api.UserCreate) (api.UserInvite, error) { return c.AddUser(r.Context(), p, req) })
}

// AddUser creates a user with a role and returns their one-time user join
// string (`ward user add`): the person logs in with it from their own
// machine, where their key is made.
func (c *Coordinator) AddUser(ctx context.Context, p authz.Principal, req api.UserCreate) (api.UserInvite, error) {
	if err := c.allow(p, authz.UserManage); err != nil {
		return api.UserInvite{}, err
	}
	if err := pki.ValidName("user", req.Name); err != nil {
		return api.UserInvite{}, api.Errorf(api.CodeInvalidArgument, "choose a user name of lower-case letters, digits, '-', '_' and '.'", "%v", err)
	}
	if req.Name == authz.AdminName {
		return api.UserInvite{}, api.Errorf(api.CodeAlreadyExists, "give each person a name of their own, such as `ward user add alice --role admin`",
			"user %q is the coordinator's admin credential (its admin.context)", req.Name)
	}
	role, ttl, err := inviteTerms(req.Role, req.TTL)
	if err != nil {
		return api.UserInvite{}, err
	}
	now := c.now()
	c.userMu.Lock()
	defer c.userMu.Unlock()
	if old := c.users[req.Name]; old != nil && old.Removed.IsZero() {
		return api.UserInvite{}, api.Errorf(api.CodeAlreadyExists,
			fmt.Sprintf("change their role with `ward user role %s ROLE` (which also gives a new login), or remove them first", req.Name),
			"user %s already exists (role %s)", req.Name, old.Role)
	}
	u := &userRecord{Name: req.Name, Role: string(role), Created: now.UTC(), CreatedBy: p.String()}
	join, err := c.newInvite(u, ttl, now)
	if err != nil {
		return api.UserInvite{}, err
	}
	if err := c.journal.Wait([]store.Op{putJSON(userKey(u.Name), u)}); err != nil {
		return api.UserInvite{}, fmt.Errorf("store user: %w", err)
	}
	c.users[u.Name] = u
	c.Record(p, audit.Event{Type: "user.add", Target: c.userID(u.Name).String(), Detail: map[string]string{"role": u.Role, "login_expires": u.LoginExpires.Format(time.RFC3339)}})
	return api.UserInvite{User: c.userAPI(u, certCount{}, now), Join: join, Revoked: api.RevokeResult{Serials: []string{}}}, nil
}

func (c *Coordinator) apiUserList(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[[]api.User](w)(c.Users(r.Context(), p))
}

// certCount is how many valid certificates an identity holds, and the
// latest expiry among them.
type certCount struct {
	n      int
	expiry time.Time
}

// userCerts counts the valid certificates of every user identity.
func (c *Coordinator) userCerts(ctx context.Context, now time.Time) (map[string]certCount, error) {
	out := map[string]certCount{}
	err := c.st.Scan(ctx, prefixCerts, func(r store.Record) error {
		var cr certRecord
		if err := json.Unmarshal(r.Value, &cr); err != nil {
			return fmt.Errorf("%s: %w", r.Key, err)
		}
		if cr.Role != string(pki.RoleUser) || cr.Revoked || !now.Before(cr.NotAfter) {
			return nil
		}
		cc := out[cr.Identity]
		cc.n++
		if cr.NotAfter.After(cc.expiry) {
			cc.expiry = cr.NotAfter
		}
		out[cr.Identity] = cc
		return nil
	})
	return out, err
}

func (c *Coordinator) userAPI(u *userRecord, cc certCount, now time.Time) api.User {
	return api.User{Name: u.Name, Identity: c.userID(u.Name).String(), Role: u.Role, State: u.state(now), Created: u.Created, CreatedBy: u.CreatedBy,
		LoginExpires: u.LoginExpires, LastLogin: u.LastLogin, Certs: cc.n, CertExpiry: cc.expiry, Removed: u.Removed}
}

// Users lists every user, the admin credential first, then by name.
func (c *Coordinator) Users(ctx context.Context, p authz.Principal) ([]api.User, error) {
	if err := c.allow(p, authz.UserRead); err != nil {
		return nil, err
	}
	now := c.now()
	certs, err := c.userCerts(ctx, now)
	if err != nil {
		return nil, err
	}
	admin := c.userID(authz.AdminName).String()
	out := []api.User{{Name: authz.AdminName, Identity: admin, Role: string(authz.RoleAdmin), State: "active", CreatedBy: "coordinator init",
		Certs: certs[admin].n, CertExpiry: certs[admin].expiry}}
	if certs[admin].n == 0 {
		out[0].State = "removed"
	}
	c.userMu.Lock()
	var rest []api.User
	for _, u := range c.users {
		rest = append(rest, c.userAPI(u, certs[c.userID(u.Name).String()], now))
	}
	c.userMu.Unlock()
	sort.Slice(rest, func(a, b int) bool { return rest[a].Name < rest[b].Name })
	return append(out, rest...), nil
}

func (c *Coordinator) apiUserRole(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.UserRoleChange
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	return reply[api.UserInvite](w)(c.ChangeUserRole(r.Context(), p, r.PathValue("name"), req))
}

// ChangeUserRole gives a user another role: every certificate they hold is
// revoked at once (their live connections close), and a new one-time login
// gives them a new certificate with the new role, for a key made on their
// machine. A role is never widened on a certificate already issued.
func (c *Coordinator) ChangeUserRole(ctx context.Context, p authz.Principal, name string, req api.UserRoleChange) (api.UserInvite, error) {
	if err := c.allow(p, authz.UserManage); err != nil {
		return api.UserInvite{}, err
	}
	if name == authz.AdminName {
		return api.UserInvite{}, api.Errorf(api.CodeFailedPrecondition, "add a user with the role you want (`ward user add NAME --role ROLE`); `ward user remove admin` retires the admin credential",
			"the admin credential always has role admin")
	}
	role, ttl, err := inviteTerms(req.Role, req.TTL)
	if err != nil {
		return api.UserInvite{}, err
	}
	now := c.now()
	c.userMu.Lock()
	u := c.users[name]
	if u == nil || !u.Removed.IsZero() {
		c.userMu.Unlock()
		return api.UserInvite{}, api.Errorf(api.CodeNotFound, "list users with `ward user ls`", "no user named %q", name)
	}
	next := *u
	old := next.Role
	next.Role = string(role)
	join, err := c.newInvite(&next, ttl, now)
	if err == nil {
		err = c.journal.Wait([]store.Op{putJSON(userKey(name), &next)})
	}
	if err != nil {
		c.userMu.Unlock()
		return api.UserInvite{}, err
	}
	*u = next
	c.userMu.Unlock()
	// A login that raced this change committed its certificate under
	// userMu before it, so the scan below finds it.
	res, err := c.revokeUser(ctx, p, name, "affiliation-changed")
	if err != nil {
		return api.UserInvite{}, err
	}
	c.Record(p, audit.Event{Type: "user.role", Target: c.userID(name).String(), Detail: map[string]string{"role": string(role), "old_role": old,
		"revoked": fmt.Sprint(len(res.Serials) + len(res.Renewed)), "connections_closed": fmt.Sprint(res.Closed)}})
	return api.UserInvite{User: c.userAPI(&next, certCount{}, now), Join: join, Revoked: res}, nil
}

// revokeUser revokes every valid certificate of user name (and what was
// renewed from them); their live connections close.
func (c *Coordinator) revokeUser(ctx context.Context, p authz.Principal, name, reason string) (api.RevokeResult, error) {
	serials, err := c.certsOf(ctx, c.userID(name).String(), c.now())
	if err != nil {
		return api.RevokeResult{}, err
	}
	if len(serials) == 0 {
		return api.RevokeResult{Serials: []string{}}, nil
	}
	return c.revoke(ctx, revocation{serials: serials, reason: reason, who: p, cascade: true})
}

func (c *Coordinator) apiUserRemove(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.UserRemoved](w)(c.RemoveUser(r.Context(), p, r.PathValue("name")))
}

// RemoveUser revokes every certificate of a user, which cuts their live
// API connections (a `ward logs -f` among them) at once, and voids a
// pending login. `ward user remove admin` retires the admin credential.
func (c *Coordinator) RemoveUser(ctx context.Context, p authz.Principal, name string) (api.UserRemoved, error) {
	if err := c.allow(p, authz.UserManage); err != nil {
		return api.UserRemoved{}, err
	}
	if name == p.ID.Name {
		return api.UserRemoved{}, api.Errorf(api.CodeFailedPrecondition, "ask another admin to remove this user", "you are %s: removing yourself would lock you out mid-way", p.ID)
	}
	now := c.now()
	var rec userRecord
	c.userMu.Lock()
	u := c.users[name]
	switch {
	case name == authz.AdminName:
		rec = userRecord{Name: name, Role: string(authz.RoleAdmin), Removed: now.UTC()}
	case u == nil || !u.Removed.IsZero():
		c.userMu.Unlock()
		return api.UserRemoved{}, api.Errorf(api.CodeNotFound, "list users with `ward user ls`", "no user named %q", name)
	default:
		rec = *u
		rec.Removed = now.UTC()
		if err := c.journal.Wait([]store.Op{putJSON(userKey(name), &rec)}); err != nil {
			c.userMu.Unlock()
			return api.UserRemoved{}, err
		}
		*u = rec
	}
	c.userMu.Unlock()
	res, err := c.revokeUser(ctx, p, name, "privilege-withdrawn")
	if err != nil {
		return api.UserRemoved{}, err
	}
	c.Record(p, audit.Event{Type: "user.remove", Target: c.userID(name).String(), Detail: map[string]string{
		"revoked": fmt.Sprint(len(res.Serials) + len(res.Renewed)), "connections_closed": fmt.Sprint(res.Closed)}})
	return api.UserRemoved{User: c.userAPI(&rec, certCount{}, now), Revoked: res}, nil
}

// apiLogin is a person's first contact (public port): the one-time login
// from their user join string and a CSR for a key made on their machine.
func (c *Coordinator) apiLogin(w http.ResponseWriter, r *http.Request) {
	src, _, _ := net.SplitHostPort(r.RemoteAddr)
	var req api.LoginRequest
	resp, serial, err := c.login(w, r, src, &req)
	ev := audit.Event{Type: "user.login", Actor: src, Detail: map[string]string{}}
	if pki.ValidName("user", req.User) == nil {
		ev.Target = c.userID(req.User).String()
	}
	if err != nil {
		e := api.AsError(err)
		ev.Result, ev.Detail["message"] = string(e.Code), e.Message
		c.audit.Record(ev)
		c.log.Info("login refused", "peer_addr", r.RemoteAddr, "user", ev.Target, "code", string(e.Code), "reason", e.Message)
		writeError(w, c, err)
		return
	}
	ev.Detail["serial"], ev.Detail["role"] = serial, resp.Role
	c.audit.Record(ev)
	c.log.Info("user logged in", "user", ev.Target, "role", resp.Role, "peer_addr", r.RemoteAddr, "cert_serial", serial)
	writeJSON(w, http.StatusOK, resp)
}

// checkLogin applies the login rules in an order that leaks nothing to a
// caller without the secret: the secret first, then removed, used,
// expired. A login replaced by a role change no longer matches.
func checkLogin(u *userRecord, tokenID, secret string, now time.Time) error {
	if u == nil || u.TokenID != tokenID || !enroll.SecretMatches(secret, u.SecretHash) {
		return api.Errorf(api.CodeTokenInvalid, "copy the whole user join string again from `ward user add` (or `ward user role`); a role change replaces the earlier one", "the one-time login is not valid")
	}
	switch {
	case !u.Removed.IsZero():
		return api.Errorf(api.CodeTokenRevoked, "ask an admin to add you again", "user %s was removed", u.Name)
	case u.LoginUsed:
		return api.Errorf(api.CodeTokenUsed, "ask an admin for a new login (`ward user role NAME ROLE`); each login works once", "this one-time login of user %s was already used", u.Name)
	case !now.Before(u.LoginExpires):
		return api.Errorf(api.CodeTokenExpired, "ask an admin for a new login (`ward user role NAME ROLE --ttl ...`)", "the one-time login expired at %s", u.LoginExpires.Format(time.RFC3339))
	}
	return nil
}

func (c *Coordinator) login(w http.ResponseWriter, r *http.Request, src string, req *api.LoginRequest) (*api.LoginResponse, string, error) {
	if err := c.readJSON(w, r, req); err != nil {
		return nil, "", err
	}
	valid := func(now time.Time) bool {
		c.userMu.Lock()
		defer c.userMu.Unlock()
		return checkLogin(c.users[req.User], req.TokenID, req.Secret, now) == nil
	}
	if err := c.admitAttempt(src, valid); err != nil {
		return nil, "", err
	}
	now := c.now()
	c.userMu.Lock()
	err := checkLogin(c.users[req.User], req.TokenID, req.Secret, now)
	c.userMu.Unlock()
	if err != nil {
		return nil, "", err
	}
	id := c.userID(req.User)
	csr, err := pki.CheckCSR(req.CSR, pki.CSRPolicy{ID: id})
	if err != nil {
		return nil, "", err
	}
	// Consume the login and record the certificate under userMu, so a
	// role change or removal either comes first (and this login fails) or
	// finds the certificate and revokes it.
	c.userMu.Lock()
	defer c.userMu.Unlock()
	u := c.users[req.User]
	if err := checkLogin(u, req.TokenID, req.Secret, now); err != nil {
		return nil, "", err
	}
	iss := c.issuer()
	cert, err := iss.Issue(pki.LeafSpec{ID: id, PublicKey: csr.PublicKey, Lifetime: c.cfg.UserCertLifetime.D(), CRLURLs: c.crlURLs(), UserRole: u.Role}, now)
	if err != nil {
		return nil, "", err
	}
	next := *u
	next.LoginUsed, next.LastLogin = true, now.UTC()
	crec := issuedRecord(cert, iss.CA.Cert)
	if err := c.journal.Wait([]store.Op{putJSON(userKey(u.Name), &next), putJSON(certKey(crec.Serial), crec)}); err != nil {
		return nil, "", err
	}
	*u = next
	return &api.LoginResponse{
		User: u.Name, Role: u.Role, Cluster: c.cfg.Cluster,
		ChainPEM:     pki.EncodeCertsPEM(cert, iss.CA.Cert),
		BundlePEM:    c.clientBundle().PEM(),
		ClusterAddrs: []string{c.advertisedAddr(c.cfg.ClusterAddr)},
		PublicAddrs:  []string{c.advertisedAddr(c.cfg.PublicAddr)},
	}, crec.Serial, nil
}
