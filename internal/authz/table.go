package authz

// Action names an operation for authorization. Every API route and every
// web admin action declares one; its rule is in table.
type Action string

// The operations of the API and the web admin.
const (
	StatusRead     Action = "status.read" // the cluster summary
	NodeRead       Action = "node.read"
	NodeDrain      Action = "node.drain"
	NodeUndrain    Action = "node.undrain"
	NodeRevoke     Action = "node.revoke"
	JobRead        Action = "job.read" // job lists, a job's tasks and its output
	JobSubmit      Action = "job.submit"
	JobCancel      Action = "job.cancel"
	JobRequeue     Action = "job.requeue" // run a finished job's tasks again
	JobClone       Action = "job.clone"   // submit a copy of a job
	TokenRead      Action = "token.read"
	TokenCreate    Action = "token.create"
	TokenRevoke    Action = "token.revoke"
	CertRead       Action = "cert.read"
	CertRevoke     Action = "cert.revoke"
	CertRenew      Action = "cert.renew" // a certificate's holder renews it
	CARead         Action = "ca.read"    // rotation progress, the trust bundle
	CARotate       Action = "ca.rotate"
	CRLRead        Action = "crl.read"
	DoctorRead     Action = "doctor.read"
	AuditRead      Action = "audit.read"
	MetricsRead    Action = "metrics.read"
	MigrateRead    Action = "migrate.read"
	MigrateUpgrade Action = "migrate.upgrade"
	MigrateFinish  Action = "migrate.finish"
	CheckRun       Action = "check.run"
	UILink         Action = "ui.link"
	DebugInfo      Action = "debug.info"   // a support bundle's view: effective config, recent logs, data directory listing
	StoreBackup    Action = "store.backup" // a copy of the whole store: every record, token hashes included
	UserRead       Action = "user.read"
	UserManage     Action = "user.manage" // add, change the role of, remove users
	// ClusterMaintenance turns maintenance mode on or off: admins only.
	ClusterMaintenance Action = "cluster.maintenance"
	ProfileRead        Action = "profile.read"
	ProfileSet         Action = "profile.set"    // create, change or delete an agent profile
	ProfileAssign      Action = "profile.assign" // choose the nodes a profile applies to
	// StagingAttempt is an agent fetching its attempt's input files or
	// sending its outputs (the handler checks the attempt is the agent's).
	StagingAttempt Action = "staging.attempt"
	// Public is what needs no identity: joins, the CA bundle, the CRL and
	// readiness on the public port, and the console's own sign-in (its
	// pages then check the action each one performs).
	Public Action = "public"
)

// Scope is how far a role reaches with an action.
type Scope uint8

// The scopes.
const (
	// ScopeNone: refused.
	ScopeNone Scope = iota
	// ScopeOwn: only what the principal submitted (its own jobs).
	ScopeOwn
	// ScopeAll: everything.
	ScopeAll
)

// Rule is who may perform an action.
type Rule struct {
	// Describe says what the action does, for refusals: "submitting jobs".
	Describe string
	// Scope per role.
	Admin, Operator, Submitter, Viewer Scope
	// Agents and Coordinators: those certificates may too (renewal,
	// metrics scrapes); otherwise only users.
	Agents, Coordinators bool
	// Public needs no identity at all.
	Public bool
}

func (r Rule) scope(role Role) Scope {
	switch role {
	case RoleAdmin:
		return r.Admin
	case RoleOperator:
		return r.Operator
	case RoleSubmitter:
		return r.Submitter
	case RoleViewer:
		return r.Viewer
	}
	return ScopeNone
}

// Roles lists the roles the rule admits, most privileged first.
func (r Rule) Roles() []Role {
	var out []Role
	for _, role := range Roles {
		if r.scope(role) != ScopeNone {
			out = append(out, role)
		}
	}
	return out
}

// Shorthands for the table.
const (
	n   = ScopeNone
	own = ScopeOwn
	all = ScopeAll
)

// table is the one authorization table: what each action needs. The
// route × role test (internal/coordinator) walks every registered route
// against it over real mTLS; README "Users and roles" shows it.
var table = map[Action]Rule{
	//                                                        admin operator submitter viewer
	StatusRead:         {Describe: "reading the cluster's status", Admin: all, Operator: all, Submitter: all, Viewer: all},
	NodeRead:           {Describe: "listing nodes", Admin: all, Operator: all, Submitter: all, Viewer: all},
	NodeDrain:          {Describe: "draining a node", Admin: all, Operator: all},
	NodeUndrain:        {Describe: "undraining a node", Admin: all, Operator: all},
	NodeRevoke:         {Describe: "revoking a node", Admin: all, Operator: all},
	JobRead:            {Describe: "reading jobs and their output", Admin: all, Operator: all, Submitter: own, Viewer: all},
	JobSubmit:          {Describe: "submitting jobs", Admin: all, Operator: all, Submitter: all},
	JobCancel:          {Describe: "canceling jobs", Admin: all, Operator: all, Submitter: own},
	JobRequeue:         {Describe: "requeueing jobs", Admin: all, Operator: all, Submitter: own},
	JobClone:           {Describe: "cloning jobs", Admin: all, Operator: all, Submitter: own},
	TokenRead:          {Describe: "listing join tokens", Admin: all, Operator: all},
	TokenCreate:        {Describe: "creating join tokens", Admin: all, Operator: all},
	TokenRevoke:        {Describe: "revoking join tokens", Admin: all, Operator: all},
	CertRead:           {Describe: "listing certificates", Admin: all, Operator: all},
	CertRevoke:         {Describe: "revoking a certificate", Admin: all},
	CertRenew:          {Describe: "renewing one's own certificate", Admin: all, Operator: all, Submitter: all, Viewer: all, Agents: true},
	CARead:             {Describe: "reading the CA's status", Admin: all, Operator: all, Viewer: all},
	CARotate:           {Describe: "rotating the CA", Admin: all},
	CRLRead:            {Describe: "reading the CRL", Admin: all, Operator: all, Submitter: all, Viewer: all, Agents: true, Coordinators: true},
	DoctorRead:         {Describe: "running the cluster doctor", Admin: all, Operator: all, Viewer: all},
	AuditRead:          {Describe: "reading the audit log", Admin: all, Operator: all},
	MetricsRead:        {Describe: "scraping metrics", Admin: all, Operator: all, Submitter: all, Viewer: all, Coordinators: true},
	MigrateRead:        {Describe: "reading the plaintext migration's status", Admin: all, Operator: all, Viewer: all},
	MigrateUpgrade:     {Describe: "moving plaintext agents to TLS", Admin: all},
	MigrateFinish:      {Describe: "finishing the plaintext migration", Admin: all},
	CheckRun:           {Describe: "running a connection check from the coordinator", Admin: all},
	UILink:             {Describe: "opening a web console session", Admin: all, Operator: all, Submitter: all, Viewer: all},
	DebugInfo:          {Describe: "reading the coordinator's debug information", Admin: all},
	StoreBackup:        {Describe: "backing up the store", Admin: all},
	UserRead:           {Describe: "listing users", Admin: all},
	UserManage:         {Describe: "managing users", Admin: all},
	ClusterMaintenance: {Describe: "turning maintenance mode on or off", Admin: all},
	ProfileRead:        {Describe: "listing agent profiles", Admin: all, Operator: all, Viewer: all},
	ProfileSet:         {Describe: "changing agent profiles", Admin: all, Operator: all},
	ProfileAssign:      {Describe: "assigning agent profiles to nodes", Admin: all, Operator: all},
	StagingAttempt:     {Describe: "staging an attempt's files", Agents: true},
	Public:             {Describe: "public routes", Public: true},
}

// RuleOf returns the rule of a, and whether the table has one.
func RuleOf(a Action) (Rule, bool) {
	r, ok := table[a]
	return r, ok
}

// Actions lists every action in the table.
func Actions() []Action {
	out := make([]Action, 0, len(table))
	for a := range table {
		out = append(out, a)
	}
	return out
}

// Can reports whether role may perform a at all (on its own objects at
// least), for showing or hiding a console action; Decide is the check.
func Can(role Role, a Action) bool {
	r, ok := table[a]
	return ok && (r.Public || r.scope(role) != ScopeNone)
}
