package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/store"
)

// keyMaintenance holds the maintenance mode record (api.Maintenance).
const keyMaintenance = "meta/maintenance"

// maintenance returns the maintenance mode in effect.
func (c *Coordinator) maintenance() api.Maintenance {
	if m := c.maint.Load(); m != nil {
		return *m
	}
	return api.Maintenance{}
}

// loadMaintenance reads the stored maintenance mode at start.
func (c *Coordinator) loadMaintenance(ctx context.Context) error {
	rec, err := c.st.Get(ctx, keyMaintenance)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var m api.Maintenance
	if err := json.Unmarshal(rec.Value, &m); err != nil {
		return fmt.Errorf("%s: %w", keyMaintenance, err)
	}
	c.maint.Store(&m)
	if m.On {
		c.log.Warn("the cluster is in maintenance mode: submissions from users who are not admins are refused", "since", m.Since.Format(time.RFC3339), "by", m.By, "message", m.Message,
			"fix", "`ward cluster maintenance off` when the work is done")
	}
	return nil
}

// refuseInMaintenance refuses new work from p while maintenance mode is on,
// unless p is an admin. what names the refused action.
func (c *Coordinator) refuseInMaintenance(p authz.Principal, what string) error {
	m := c.maint.Load()
	if m == nil || !m.On || authz.IsAdmin(p) {
		return nil
	}
	msg := fmt.Sprintf("the cluster is in maintenance since %s", m.Since.UTC().Format(time.RFC3339))
	if m.Message != "" {
		msg += ": " + m.Message
	}
	c.log.Info("refused in maintenance mode", "identity", p.ID.String(), "action", what)
	return api.Errorf(api.CodeMaintenance, "try again when it ends (`ward status` shows it); queued and running jobs go on meanwhile",
		"%s; %s is refused for users who are not admins", msg, what)
}

func (c *Coordinator) apiMaintenanceGet(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	return reply[api.Maintenance](w)(c.Maintenance(r.Context(), p))
}

// Maintenance is the maintenance mode in effect, for anyone who may read
// the cluster's status (the web console shows it on every page).
func (c *Coordinator) Maintenance(ctx context.Context, p authz.Principal) (api.Maintenance, error) {
	if err := c.allow(p, authz.StatusRead); err != nil {
		return api.Maintenance{}, err
	}
	return c.maintenance(), nil
}

func (c *Coordinator) apiMaintenanceSet(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.MaintenanceRequest
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	m, err := c.SetMaintenance(r.Context(), p, req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, m)
}

// SetMaintenance turns maintenance mode on (with the message users are
// refused with) or off. Only admins may; the change is durable before it
// answers, and audited.
func (c *Coordinator) SetMaintenance(ctx context.Context, p authz.Principal, req api.MaintenanceRequest) (api.Maintenance, error) {
	if err := c.allow(p, authz.ClusterMaintenance); err != nil {
		return api.Maintenance{}, err
	}
	if err := authz.RequireAdmin(p, "maintenance mode"); err != nil {
		return api.Maintenance{}, err
	}
	req.Message = strings.TrimSpace(req.Message)
	if len(req.Message) > api.MaxMaintenanceMessage {
		return api.Maintenance{}, api.Errorf(api.CodeInvalidArgument, "shorten --message", "the maintenance message is %d bytes; the limit is %d", len(req.Message), api.MaxMaintenanceMessage)
	}
	if !req.On && req.Message != "" {
		return api.Maintenance{}, api.Errorf(api.CodeInvalidArgument, "pass --message only with `on`", "a message is given but maintenance mode is being turned off")
	}
	if strings.ContainsAny(req.Message, "\x00\r\n") {
		return api.Maintenance{}, api.Errorf(api.CodeInvalidArgument, "write the message on one line", "the maintenance message holds a line break or NUL")
	}
	m := api.Maintenance{}
	if req.On {
		m = api.Maintenance{On: true, Message: req.Message, Since: c.now().UTC(), By: p.String()}
	}
	// c.mu orders concurrent changes: the last commit is the last stored.
	c.mu.Lock()
	was := c.maintenance()
	c.maint.Store(&m)
	done := make(chan error, 1)
	c.commit(changes{extra: []store.Op{putJSON(keyMaintenance, m)}}, nil, func(err error) { done <- err })
	c.mu.Unlock()
	if err := <-done; err != nil {
		return api.Maintenance{}, err
	}
	state := "off"
	if m.On {
		state = "on"
		c.log.Warn("maintenance mode on: submissions from users who are not admins are refused; queued and running jobs go on", "by", m.By, "message", m.Message)
	} else {
		c.log.Info("maintenance mode off", "by", p.String(), "was_on_since", was.Since.Format(time.RFC3339))
	}
	c.Record(p, audit.Event{Type: "cluster.maintenance", Target: c.cfg.Cluster, Result: "ok", Detail: map[string]string{"state": state, "message": m.Message, "was": boolStr(was.On)}})
	return m, nil
}
