package coordinator

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/audit"
	"github.com/wardcluster/ward/internal/authz"
	"github.com/wardcluster/ward/internal/diagnose"
	"github.com/wardcluster/ward/internal/pki"
	"github.com/wardcluster/ward/internal/transport"
)

// maxCheckTimeout bounds one connection check run from the coordinator.
const maxCheckTimeout = 30 * time.Second

// checkSlots bounds concurrent connection checks: each holds a socket and a
// goroutine on the coordinator for up to maxCheckTimeout.
var checkSlots = make(chan struct{}, 4)

func (c *Coordinator) apiCheck(w http.ResponseWriter, r *http.Request, p authz.Principal) error {
	var req api.CheckRequest
	if err := c.readJSON(w, r, &req); err != nil {
		return err
	}
	return reply[*diagnose.Report](w)(c.CheckConnection(r.Context(), p, req))
}

// CheckConnection runs `ward check`'s check from the coordinator's host
// with the fields of req as given: the verdict, the TLS facts and the fix.
// It lets an admin test settings before saving them anywhere. The target is
// any address the admin names, so only admins may run it, it is bounded in
// time and concurrency, and every run is audited with its address (the
// target's CRL distribution points are fetched as `ward check` does).
func (c *Coordinator) CheckConnection(ctx context.Context, p authz.Principal, req api.CheckRequest) (*diagnose.Report, error) {
	if err := c.allow(p, authz.CheckRun); err != nil {
		return nil, err
	}
	select {
	case checkSlots <- struct{}{}:
		defer func() { <-checkSlots }()
	default:
		return nil, api.Errorf(api.CodeUnavailable, "wait for the running checks to finish, then try again", "%d connection checks are already running on this coordinator", cap(checkSlots))
	}
	opts, bad := c.checkOptions(req)
	var rep *diagnose.Report
	if bad != nil {
		rep = &diagnose.Report{Verdict: *bad, Address: req.Address, Chain: []diagnose.CertInfo{}}
	} else {
		rep = diagnose.Check(ctx, opts)
	}
	c.Record(p, audit.Event{Type: string(authz.CheckRun), Target: req.Address, Result: "ok", Detail: map[string]string{
		"verdict": string(rep.Code), "server_name": rep.ServerName, "cluster_ca": fmt.Sprint(req.ClusterCA), "insecure_skip_verify": fmt.Sprint(req.InsecureSkipVerify)}})
	return rep, nil
}

// checkOptions turns a request into diagnose options, or an invalid_options
// verdict naming the field at fault.
func (c *Coordinator) checkOptions(req api.CheckRequest) (diagnose.Options, *diagnose.Verdict) {
	o := diagnose.Options{Address: strings.TrimSpace(req.Address), ServerName: strings.TrimSpace(req.ServerName),
		InsecureSkipVerify: req.InsecureSkipVerify, Timeout: req.Timeout.D()}
	invalid := func(fix, format string, args ...any) (diagnose.Options, *diagnose.Verdict) {
		return o, &diagnose.Verdict{Code: diagnose.CodeInvalidOptions, Message: fmt.Sprintf(format, args...), Fix: fix}
	}
	minTLS, err := transport.ParseMinVersion(req.MinTLS)
	if err != nil {
		return invalid("choose 1.3 (default) or 1.2", "minimum %v", err)
	}
	o.MinTLS = minTLS
	if o.Timeout < 0 || o.Timeout > maxCheckTimeout {
		return invalid("use a timeout between 1s and 30s", "timeout %s is out of range", o.Timeout)
	}
	if req.ClusterCA || strings.TrimSpace(req.CAPEM) != "" {
		o.Roots = x509.NewCertPool()
	}
	if req.ClusterCA {
		for _, root := range c.clientBundle() {
			o.Roots.AddCert(root)
		}
	}
	if strings.TrimSpace(req.CAPEM) != "" {
		certs, err := pki.ParseCertsPEM([]byte(req.CAPEM))
		if err != nil || len(certs) == 0 {
			return invalid("paste one or more PEM certificates (-----BEGIN CERTIFICATE-----)", "the CA field is not PEM certificates: %v", errOrEmpty(err))
		}
		for _, cert := range certs {
			o.Roots.AddCert(cert)
		}
	}
	var pins []string
	for _, s := range req.Pins {
		if s = strings.TrimSpace(s); s != "" {
			pins = append(pins, s)
		}
	}
	if len(pins) > 0 {
		parsed, err := pki.ParsePins(pins)
		if err != nil {
			return invalid("copy the pin again; `ward ca pin` on the coordinator prints the cluster's", "pin: %v", err)
		}
		o.Pins = parsed
	}
	return o, nil
}

func errOrEmpty(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("no certificate found")
}
