// Package runas maps a job's Ward user to a local account on an agent
// started with --run-as-user: the same name, or the name a mapping file
// gives. The agent then runs the task with that account's uid, gid and
// supplementary groups. Root is never the mapped account unless the site
// allows it.
package runas

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/pki"
)

// Account is a local account a task runs as.
type Account struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups
	Home   string
}

// Credential is what the process is started with.
func (a Account) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: a.UID, Gid: a.GID, Groups: a.Groups}
}

// Mapper resolves Ward users to local accounts on one node.
type Mapper struct {
	node      string
	mapFile   string
	mapping   map[string]string // Ward user → local account, from the file
	allowRoot bool
	lookup    func(name string) (*user.User, error)
	groups    func(u *user.User) ([]string, error)
}

// New makes the mapper of node. mapFile ("" for none) holds lines
// "WARD_USER LOCAL_ACCOUNT"; users it does not name map to the account of
// the same name. allowRoot lets a user map to uid 0.
func New(node, mapFile string, allowRoot bool) (*Mapper, error) {
	m := &Mapper{node: node, mapFile: mapFile, allowRoot: allowRoot, lookup: user.Lookup,
		groups: func(u *user.User) ([]string, error) { return u.GroupIds() }}
	if mapFile == "" {
		return m, nil
	}
	data, err := os.ReadFile(mapFile)
	if err != nil {
		return nil, fmt.Errorf("user_map_file (--user-map) %s: %w", mapFile, err)
	}
	if err := checkOwnedAndPrivate(mapFile); err != nil {
		return nil, fmt.Errorf("user_map_file (--user-map): %w", err)
	}
	if m.mapping, err = ParseMap(data); err != nil {
		return nil, fmt.Errorf("user_map_file (--user-map) %s: %w", mapFile, err)
	}
	return m, nil
}

// checkOwnedAndPrivate refuses a mapping file that anyone but its owner
// (root or the agent's own account) can change: it decides which account
// tasks run as.
func checkOwnedAndPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by its group or others (mode %04o); it decides which account tasks run as (fix: chmod go-w %s)", path, st.Mode().Perm(), path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, neither root nor the agent (fix: chown root %s)", path, sys.Uid, path)
	}
	return nil
}

// SetNode names the node in refusals (known once the agent has joined).
func (m *Mapper) SetNode(node string) { m.node = node }

// ParseMap reads a mapping file: one "WARD_USER LOCAL_ACCOUNT" per line;
// blank lines and lines starting with # are ignored. Every problem names
// its line.
func ParseMap(data []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"WARD_USER LOCAL_ACCOUNT\", got %d fields", n, len(f))
		}
		if err := pki.ValidName("user", f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		if _, dup := out[f[0]]; dup {
			return nil, fmt.Errorf("line %d: Ward user %s is mapped twice", n, f[0])
		}
		out[f[0]] = f[1]
	}
	return out, sc.Err()
}

// Resolve finds the local account wardUser's tasks run as on this node.
// A user with no account, or one that maps to root without the site's
// leave, is refused with USER_UNKNOWN_ON_NODE naming the node.
func (m *Mapper) Resolve(wardUser string) (Account, error) {
	if wardUser == "" {
		return Account{}, m.unknown(wardUser, "", "the assignment names no user (is the coordinator older than this agent?)")
	}
	local, mapped := m.mapping[wardUser]
	if !mapped {
		local = wardUser
	}
	u, err := m.lookup(local)
	if err != nil {
		how := "no local account of the same name"
		if mapped {
			how = fmt.Sprintf("%s maps it to %q, which does not exist here", m.mapFile, local)
		}
		return Account{}, m.unknown(wardUser, local, how)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return Account{}, m.unknown(wardUser, local, fmt.Sprintf("its uid %q or gid %q is not a number", u.Uid, u.Gid))
	}
	if uid == 0 && !m.allowRoot {
		return Account{}, api.Errorf(api.CodeUserUnknownOnNode,
			"map the user to an unprivileged account (--user-map), or, if the site really wants tasks as root, start the agent with --run-as-allow-root",
			"node %s: Ward user %s maps to root (%s); tasks never run as root unless run_as_allow_root is set", m.node, wardUser, local)
	}
	acct := Account{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	ids, err := m.groups(u)
	if err != nil {
		return Account{}, m.unknown(wardUser, local, fmt.Sprintf("its groups cannot be read: %v", err))
	}
	for _, s := range ids {
		g, err := strconv.ParseUint(s, 10, 32)
		if err == nil && uint32(g) != acct.GID {
			acct.Groups = append(acct.Groups, uint32(g))
		}
	}
	if acct.Groups == nil {
		acct.Groups = []uint32{} // no supplementary groups: never the agent's own
	}
	return acct, nil
}

func (m *Mapper) unknown(wardUser, local, why string) error {
	return api.Errorf(api.CodeUserUnknownOnNode,
		fmt.Sprintf("create the account on node %s (useradd %s), or map the user to one in the --user-map file", m.node, orName(local, wardUser)),
		"node %s has no local account for Ward user %q: %s", m.node, wardUser, why)
}

func orName(local, wardUser string) string {
	if local != "" {
		return local
	}
	return "NAME"
}

// Self describes the account this process runs as, "name (uid N)", for
// `ward job status` when tasks run as the agent itself.
func Self() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
