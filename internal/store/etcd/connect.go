package etcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/wardcluster/ward/internal/diagnose"
)

// check is Open's first contact: every endpoint is asked for its status;
// none answering is an error with a diagnosis per endpoint, some not
// answering a warning each. Then the server's transaction limits are
// checked against Options.Limits.
func (s *Store) check(ctx context.Context) error {
	var up []string
	var version string
	failed := map[string]error{}
	for _, ep := range s.opts.Endpoints {
		pctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		st, err := s.cli.Status(pctx, ep)
		cancel()
		if err != nil {
			failed[ep] = err
			continue
		}
		up = append(up, ep)
		version = st.Version
	}
	if len(up) == 0 {
		var lines []string
		for _, ep := range s.opts.Endpoints {
			v := Diagnose(ctx, ep, s.opts.TLS, s.opts.DialTimeout)
			if v.OK() {
				v = diagnose.Verdict{Code: diagnose.CodeUnclassified,
					Message: fmt.Sprintf("the TLS link to %s works, but etcd did not answer a status request: %v", ep, failed[ep]),
					Fix:     "check that this is etcd's client port and that etcd is healthy: `etcdctl --endpoints " + ep + " endpoint health`"}
			}
			lines = append(lines, fmt.Sprintf("%s: %s: %s (fix: %s)", ep, v.Code, v.Message, v.Fix))
		}
		return &ConnectError{Endpoints: s.opts.Endpoints, Lines: lines}
	}
	for _, ep := range s.opts.Endpoints {
		if err := failed[ep]; err != nil {
			v := Diagnose(ctx, ep, s.opts.TLS, s.opts.DialTimeout)
			s.log.Warn("etcd endpoint not answering; using the others", "endpoint", ep, "verdict", string(v.Code), "reason", v.Message, "fix", v.Fix, "err", err)
		}
	}
	if err := s.checkLimits(ctx); err != nil {
		return err
	}
	link := "mutual TLS"
	if s.opts.InsecurePlaintext {
		link = "PLAINTEXT (insecure)"
	}
	s.log.Info("etcd store connected", "endpoints", strings.Join(s.opts.Endpoints, ","), "answering", len(up),
		"etcd_version", version, "link", link, "prefix", s.prefix,
		"max_txn_ops", s.opts.Limits.MaxOps, "max_txn_bytes", s.opts.Limits.MaxBytes)
	return nil
}

// checkLimits sends two read-only transactions as large as the biggest this
// store will send (conditions that cannot hold, so nothing is written), and
// refuses a server configured to reject them: better at start than as a
// failed commit under load.
func (s *Store) checkLimits(ctx context.Context) error {
	lim := s.opts.Limits
	probe := s.prefix + "\x00limits-probe"
	cmps := make([]clientv3.Cmp, lim.MaxOps)
	for i := range cmps {
		cmps[i] = clientv3.Compare(clientv3.ModRevision(probe), "=", 0)
	}
	eps := strings.Join(s.opts.Endpoints, ",")
	// Each probe is a request of its own, with its own RequestTimeout: the
	// second sends several MiB, which a busy machine may take seconds over.
	err := s.probe(ctx, func(cctx context.Context) error {
		_, err := s.cli.Txn(cctx).If(cmps...).Commit()
		return err
	})
	if err != nil {
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return fmt.Errorf("etcd at %s accepts fewer than %d operations in one transaction, which Ward needs for large jobs: start etcd with --max-txn-ops=%d (its default is 128)", eps, lim.MaxOps, lim.MaxOps)
		}
		return s.fail(ctx, "check etcd's transaction limits", err)
	}
	big := clientv3.Compare(clientv3.Value(probe), "=", strings.Repeat("x", lim.MaxBytes+32*lim.MaxOps))
	err = s.probe(ctx, func(cctx context.Context) error {
		_, err := s.cli.Txn(cctx).If(big).Commit()
		return err
	})
	if err != nil {
		if errors.Is(err, rpctypes.ErrRequestTooLarge) || strings.Contains(err.Error(), "larger than max") {
			return fmt.Errorf("etcd at %s accepts transactions of fewer than %d bytes, which Ward needs for large jobs: start etcd with --max-request-bytes=%d (its default is 1.5 MiB)", eps, lim.MaxBytes, lim.MaxBytes+2<<20)
		}
		return s.fail(ctx, "check etcd's request size limit", err)
	}
	return nil
}

// probe runs one request of checkLimits under its own deadline.
func (s *Store) probe(ctx context.Context, req func(context.Context) error) error {
	cctx, done, err := s.call(ctx, true)
	if err != nil {
		return err
	}
	defer done()
	return req(cctx)
}

// ConnectError is Open's error when no etcd endpoint answered: one line per
// endpoint with its verdict and fix. The coordinator refuses to start on it
// and never falls back to a local store.
type ConnectError struct {
	Endpoints []string
	Lines     []string
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("etcd store: no etcd endpoint in %s answered, so Ward does not start (it never falls back to a local store):\n  - %s",
		SettingStore, strings.Join(e.Lines, "\n  - "))
}

// Diagnose tries one endpoint the way the store connects to it and says
// what is wrong, with a fix that names the etcd setting to change. t nil
// means plaintext. The verdict codes are internal/diagnose's.
func Diagnose(ctx context.Context, ep string, t *TLS, timeout time.Duration) diagnose.Verdict {
	if t == nil {
		return diagnosePlaintext(ctx, ep, timeout)
	}
	r := diagnose.Check(ctx, diagnose.Options{
		Address: ep, Roots: t.Roots, ClientCert: t.Cert, NextProtos: []string{"h2"}, Timeout: timeout,
	})
	v := r.Verdict
	host, _, _ := net.SplitHostPort(ep)
	switch v.Code {
	case diagnose.CodeUnknownAuthority, diagnose.CodeCertificateInvalid:
		v.Fix = fmt.Sprintf("%s (%s) must hold the CA that signed etcd's server certificate: the ca.pem `ward etcd certs` wrote, or your PKI's CA", SettingCA, t.CAFile)
	case diagnose.CodeNameMismatch:
		v.Fix = fmt.Sprintf("etcd's server certificate must name %q, the host in %s: reissue it with `ward etcd certs --host %s`, or use a name it has", host, SettingStore, host)
	case diagnose.CodeExpired, diagnose.CodeNotYetValid:
		v.Fix = "renew the expired certificate (`ward etcd certs` issues new ones) and check both machines' clocks: " + v.Fix
	case diagnose.CodeClientCertRequired:
		v.Fix = fmt.Sprintf("etcd wants a client certificate: pass %s and %s (`ward etcd certs` makes them)", SettingCert, SettingKey)
	case diagnose.CodeClientCertRejected:
		v.Fix = fmt.Sprintf("etcd refused %s (%s): it must be signed by a CA in etcd's --trusted-ca-file (with `ward etcd certs`, its ca.pem)", SettingCert, t.CertFile)
	case diagnose.CodeNotTLS, diagnose.CodeTLSToPlaintext, diagnose.CodeClosed:
		v.Fix = fmt.Sprintf("etcd at %s does not speak TLS there: start etcd with --cert-file, --key-file, --trusted-ca-file and --client-cert-auth (`ward etcd certs` prints the flags), or, insecure, use %s", ep, SettingPlaintext)
	case diagnose.CodeRefused, diagnose.CodeUnreachable, diagnose.CodeTimeout, diagnose.CodeDNS:
		v.Fix = fmt.Sprintf("check that etcd runs at %s and that %s names its client URL (etcd's --advertise-client-urls; port 2379 by default), and any firewall between", ep, SettingStore)
	}
	return v
}

// diagnosePlaintext checks a plaintext endpoint: can it be reached, and is
// it in fact a TLS port.
func diagnosePlaintext(ctx context.Context, ep string, timeout time.Duration) diagnose.Verdict {
	r := diagnose.Check(ctx, diagnose.Options{Address: ep, InsecureSkipVerify: true, NextProtos: []string{"h2"}, Timeout: timeout})
	switch v := r.Verdict; {
	case v.Code == diagnose.CodeRefused || v.Code == diagnose.CodeUnreachable || v.Code == diagnose.CodeDNS:
		v.Fix = fmt.Sprintf("check that etcd runs at %s and that %s names its client URL (port 2379 by default), and any firewall between", ep, SettingStore)
		return v
	case r.TLSVersion != "" || v.OK() || v.Code == diagnose.CodeClientCertRequired:
		return diagnose.Verdict{Code: diagnose.CodeNotTLS,
			Message: fmt.Sprintf("etcd at %s speaks TLS, but %s asked for plaintext", ep, SettingPlaintext),
			Fix:     fmt.Sprintf("drop %s and pass %s, %s and %s", SettingPlaintext, SettingCA, SettingCert, SettingKey)}
	case v.Code == diagnose.CodeTimeout:
		v.Fix = fmt.Sprintf("check that etcd runs at %s, and any firewall between", ep)
		return v
	}
	return diagnose.Verdict{Code: diagnose.CodeOK, Message: fmt.Sprintf("%s accepts connections and does not speak TLS", ep)}
}
